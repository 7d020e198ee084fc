"""From probability of default to what a lender acts on: score points, risk band, decision."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from credit_risk.schema import FEATURES, Decision

FloatArray = npt.NDArray[np.float64]

EPS: Final = 1e-12
"""Clip for probabilities before taking logs: keeps the score finite at p = 0 or 1."""


@dataclass(frozen=True)
class ScoreScaling:
    """Scorecard points: `score = offset - factor * ln(odds_bad)`, `factor = pdo / ln 2`.

    The common convention (DESIGN.md): 600 points at good:bad odds of 50:1, 20 points to
    double the odds. Stored with each model so a served score never drifts from training.
    """

    base_score: float = 600.0
    base_odds_good_to_bad: float = 50.0
    pdo: float = 20.0

    @property
    def factor(self) -> float:
        """Points per unit of log-odds."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """Score at odds_bad = 1 (log-odds 0)."""
        return self.base_score - self.factor * math.log(self.base_odds_good_to_bad)

    def as_metadata(self) -> dict[str, float]:
        """Plain numbers for the model store (offset and factor included for readers)."""
        return {**asdict(self), "offset": self.offset, "factor": self.factor}

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> ScoreScaling:
        """Inverse of `as_metadata`; ignores the derived keys."""
        return cls(
            base_score=float(data["base_score"]),
            base_odds_good_to_bad=float(data["base_odds_good_to_bad"]),
            pdo=float(data["pdo"]),
        )

    def score(self, probability_of_default: FloatArray) -> FloatArray:
        """Points for each probability (higher = lower risk)."""
        p = np.clip(probability_of_default, EPS, 1 - EPS)
        result: FloatArray = self.offset - self.factor * np.log(p / (1 - p))
        return result


RISK_BANDS: Final[tuple[tuple[str, float], ...]] = (
    ("A", 580.0),
    ("B", 560.0),
    ("C", 530.0),
    ("D", 500.0),
    ("E", -math.inf),
)
"""Lowest score of each band. With the default scaling the cut-offs sit near a probability of
default of 4 %, 8 %, 18 % and 39 %: A and B are clear approvals, C straddles the cost-optimal
threshold (~1/6), D and E are clear declines."""

DECISION_ID_BYTES: Final = 16
"""Random bytes per decision id (128 bits, as a UUID4 has): collisions are not a concern."""

MAX_REASON_CODES: Final = 4
"""Principal reasons disclosed per decline (US Reg B practice: no more than four)."""

REASONS: Final[dict[str, tuple[str, str]]] = {
    "checking_account": ("RC01", "Current-account balance, or no current account"),
    "duration_months": ("RC02", "Length of the loan term"),
    "credit_history": ("RC03", "Repayment history on past and existing credits"),
    "purpose": ("RC04", "Purpose of the loan"),
    "credit_amount": ("RC05", "Amount of credit requested"),
    "savings": ("RC06", "Level of savings and bonds"),
    "employment_since": ("RC07", "Time in present employment"),
    "installment_rate": ("RC08", "Instalment high relative to disposable income"),
    "other_debtors": ("RC09", "No co-applicant or guarantor"),
    "residence_since": ("RC10", "Time at present residence"),
    "property": ("RC11", "Property held as security"),
    "age_years": ("RC12", "Applicant's age band"),
    "other_installment_plans": ("RC13", "Instalment plans with other lenders or stores"),
    "housing": ("RC14", "Housing situation"),
    "existing_credits": ("RC15", "Number of existing credits at this bank"),
    "job": ("RC16", "Occupation and skill level"),
    "dependents": ("RC17", "Number of dependants"),
    "telephone": ("RC18", "No telephone registered in the applicant's name"),
}
"""Stable reason code and plain-words text per feature; codes never change meaning."""


def risk_bands(scores: FloatArray) -> list[str]:
    """Band letter per score."""
    floors = np.array([floor for _, floor in RISK_BANDS[:-1]])
    # floors descend; count how many a score fails to reach -> band index
    idx = (scores[:, np.newaxis] < floors[np.newaxis, :]).sum(axis=1)
    return [RISK_BANDS[i][0] for i in idx]


def top_reasons(excess_points: FloatArray, k: int = MAX_REASON_CODES) -> npt.NDArray[np.intp]:
    """Indices of the k features costing most points per row, largest first (ties by order)."""
    order = np.argsort(-excess_points, axis=1, kind="stable")
    return order[:, :k]


@dataclass(frozen=True)
class DecisionPolicy:
    """What turns model output into decisions: the model's threshold, scaling and tag."""

    threshold: float
    scaling: ScoreScaling
    model_version: str

    def records(self, probability: FloatArray, excess_logit: FloatArray) -> list[dict[str, Any]]:
        """Decisions as plain dicts in the `Decision` layout: the serving hot path.

        Everything numeric is vectorised over the batch; the loop only assembles the answer.
        Building pydantic objects here cost ~20 us per applicant, more than the model.
        """
        n = len(probability)
        assert excess_logit.shape == (n, len(FEATURES)), excess_logit.shape
        exact_scores = self.scaling.score(probability)
        scores = np.rint(exact_scores).astype(int).tolist()
        bands = risk_bands(exact_scores)
        declined = (probability > self.threshold).tolist()
        excess_points = np.round(excess_logit * self.scaling.factor, 2)
        top = top_reasons(excess_points).tolist()
        lost = np.take_along_axis(excess_points, np.asarray(top, dtype=np.intp), axis=1).tolist()
        probabilities = probability.tolist()
        ids = os.urandom(DECISION_ID_BYTES * n).hex()  # one syscall for the whole batch
        width = 2 * DECISION_ID_BYTES
        out = []
        for i in range(n):
            reasons = (
                [
                    _REASON_RECORDS[j] | {"points": -p}
                    for j, p in zip(top[i], lost[i], strict=True)
                    if p > 0
                ]
                if declined[i]
                else []
            )
            out.append(
                {
                    "probability_of_default": probabilities[i],
                    "decision": "decline" if declined[i] else "approve",
                    "threshold": self.threshold,
                    "score": scores[i],
                    "risk_band": bands[i],
                    "reason_codes": reasons,
                    "model_version": self.model_version,
                    "decision_id": ids[i * width : (i + 1) * width],
                }
            )
        return out

    def decide(self, probability: FloatArray, excess_logit: FloatArray) -> list[Decision]:
        """The same decisions as validated `Decision` objects (for library use and tests)."""
        return [Decision.model_validate(r) for r in self.records(probability, excess_logit)]


_REASON_RECORDS: Final = tuple(
    {"code": REASONS[f][0], "feature": f, "description": REASONS[f][1]} for f in FEATURES
)
"""Per feature index, the fixed part of its reason-code record."""
