"""The credit policy: every number a lender sets rather than learns, stated once.

The cost of each kind of wrong decision, the score scaling, the risk-band cut-offs, the
reason-code catalogue and the request caps live here and nowhere else. The schema's field
descriptions, the metrics' buckets, the training report and the docs' tables
(`credit-risk policy`) are derived from these values. Changing a band cut-off is a one-line
change here; changing a cost also moves the threshold training chooses, so retrain after it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from credit_risk.arrays import FloatArray

EPS: Final = 1e-12
"""Clip for probabilities before taking logs: keeps the score finite at p = 0 or 1."""


@dataclass(frozen=True)
class CostMatrix:
    """What a wrong decision costs, per applicant (the data set's documented matrix)."""

    bad_approved: float = 5.0
    good_declined: float = 1.0

    @property
    def bayes_threshold(self) -> float:
        """Cut-off that minimises expected cost if the probabilities are calibrated."""
        return self.good_declined / (self.good_declined + self.bad_approved)

    @property
    def bayes_label(self) -> str:
        """The Bayes cut-off as people write it, e.g. `1/6`."""
        return str(Fraction(self.bayes_threshold).limit_denominator(1000))


COSTS: Final = CostMatrix()
"""Approving an applicant who goes bad costs 5, declining one who would have repaid costs 1."""


@dataclass(frozen=True)
class ScoreScaling:
    """Scorecard points: `score = offset - factor * ln(odds_bad)`, `factor = pdo / ln 2`.

    Stored with each model, so a served score never drifts from the one training reported.
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

    def describe(self) -> str:
        """The convention in words, for the schema and the docs."""
        return (
            f"{self.base_score:g} points at {self.base_odds_good_to_bad:g}:1 good:bad odds, "
            f"{self.pdo:g} points to double the odds"
        )

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

    def probability(self, score: float) -> float:
        """The probability of default a score stands for (inverse of `score`)."""
        return 1.0 / (1.0 + math.exp((score - self.offset) / self.factor))


SCALING: Final = ScoreScaling()
"""The common convention: 600 points at good:bad odds of 50:1, 20 points to double the odds."""

RiskBand = Literal["A", "B", "C", "D", "E"]

BAND_FLOORS: Final[dict[RiskBand, float]] = dict(
    zip(get_args(RiskBand), (580.0, 560.0, 530.0, 500.0, -math.inf), strict=True)
)
"""Lowest score of each band, A = lowest risk. With the default scaling the cut-offs sit near
a probability of default of 4 %, 8 %, 18 % and 39 %: A and B are clear approvals, C straddles
the cost-optimal threshold, D and E are clear declines."""

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
    "installment_rate": ("RC08", "Instalment's share of disposable income"),
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
"""Stable reason code and plain-words text per applicant field; codes never change meaning."""

RECOURSE_AMOUNT_STEP: Final = 100.0
"""Recourse for a decline (credit_risk/recourse.py) offers the requested `credit_amount` or a
lower one in whole steps of this many DM, down to the smallest such step the schema admits."""
RECOURSE_TERM_STEP: Final = 1
"""... and the requested `duration_months` or a shorter one in steps of whole months, down to
the schema's shortest term. No other field is ever changed: the rest is not the applicant's
to choose."""
RECOURSE_SEARCH_TERMS: Final = 12
"""A model that is not a scorecard gets a bounded search (credit_risk/recourse.py): at most
this many terms, from the requested one down to the shortest, ..."""
RECOURSE_SEARCH_AMOUNTS: Final = 16
"""... times at most this many amounts, from the requested one down to the lowest, ..."""
RECOURSE_SEARCH_REFINE: Final = 16
"""... then at most this many amounts between the best one found and the next one tried above it
(so at most 12 x 16 + 16 = 208 model rows per declined applicant)."""

MAX_BATCH_APPLICANTS: Final = 1000
"""Applicants per /classify_batch request: ~0.5 MB of JSON, one runner call."""

MAX_BODY_BYTES: Final = 1 << 20
"""Request-body limit (1 MiB): a full batch is ~0.5 MB, so this only stops abuse."""


RISK_BANDS: Final[tuple[RiskBand, ...]] = tuple(BAND_FLOORS)
"""Band letters, lowest risk first: a band index is a position in this tuple."""


ScoreArray = npt.NDArray[np.int64]
"""Scores as a decision shows them: whole points."""


def shown_scores(probability: FloatArray, scaling: ScoreScaling) -> ScoreArray:
    """The score a decision shows: the scorecard score rounded to whole points (a tie to the
    even number, numpy's `rint`)."""
    return np.rint(scaling.score(probability)).astype(np.int64)


def band_indices(scores: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.intp]:
    """Index into `RISK_BANDS` per shown score, cut at the published `BAND_FLOORS`.

    Only whole-point scores are accepted: a band cut from the unrounded score can contradict
    the score shown beside it (579.76 is shown as 580 but falls below band A's 580).
    """
    if not np.issubdtype(scores.dtype, np.integer):
        msg = f"bands are cut from shown (whole-point) scores, got dtype {scores.dtype}"
        raise TypeError(msg)
    floors = np.array(list(BAND_FLOORS.values())[:-1])
    # floors descend; count how many a score fails to reach -> band index
    idx: npt.NDArray[np.intp] = (scores[:, np.newaxis] < floors[np.newaxis, :]).sum(
        axis=1, dtype=np.intp
    )
    return idx


def score_and_band(
    probability: FloatArray, scaling: ScoreScaling
) -> tuple[ScoreArray, npt.NDArray[np.intp]]:
    """The one rule from probability to score to band: the band is cut from the score as it is
    shown. The API, the challenger's records, portfolio runs and Spark all call this."""
    scores = shown_scores(probability, scaling)
    return scores, band_indices(scores)


def risk_bands(scores: npt.NDArray[np.integer[Any]]) -> list[str]:
    """Band letter per shown score."""
    return [RISK_BANDS[i] for i in band_indices(scores).tolist()]


def band_ceiling_probability(floor: float, scaling: ScoreScaling = SCALING) -> float:
    """The highest P(default) a band admits: a score is shown as `floor` from `floor - 0.5`."""
    return scaling.probability(floor - 0.5)


def markdown_tables(scaling: ScoreScaling = SCALING, costs: CostMatrix = COSTS) -> str:
    """The policy as the docs show it (`credit-risk policy`), so the docs cannot drift."""
    lines = [
        "| policy | value |",
        "| --- | --- |",
        f"| cost of approving an applicant who goes bad | {costs.bad_approved:g} |",
        f"| cost of declining an applicant who would have repaid | {costs.good_declined:g} |",
        f"| cost-optimal cut-off for calibrated P(default) | {costs.bayes_label} "
        f"({costs.bayes_threshold:.4f}) |",
        f"| score scaling | {scaling.describe()} |",
        "| score shown | whole points, rounded to the nearest (a tie to the even number) |",
        "| risk band | cut from the score as shown: the lowest shown score of each band below |",
        f"| reason codes per decline | at most {MAX_REASON_CODES} |",
        f"| recourse per decline | the requested amount or less in steps of "
        f"{RECOURSE_AMOUNT_STEP:g} DM, the requested term or shorter in steps of "
        f"{RECOURSE_TERM_STEP} month{'s' if RECOURSE_TERM_STEP != 1 else ''} |",
        f"| applicants per `/classify_batch` request | 1 to {MAX_BATCH_APPLICANTS:,} |",
        f"| request body | at most {MAX_BODY_BYTES:,} bytes |",
        "",
        "| risk band | lowest score | highest P(default) at the default scaling |",
        "| --- | --- | --- |",
    ]
    for band, floor in BAND_FLOORS.items():
        if math.isinf(floor):
            lines.append(f"| {band} | (any lower score) | 100 % |")
        else:
            ceiling = band_ceiling_probability(floor, scaling)
            lines.append(f"| {band} | {floor:g} | {ceiling:.1%} |")
    lines += ["", "| code | field | reason given to the applicant |", "| --- | --- | --- |"]
    lines += [f"| {code} | `{field}` | {text} |" for field, (code, text) in REASONS.items()]
    return "\n".join(lines) + "\n"


def policy_version(threshold: float, scaling: ScoreScaling) -> str:
    """The version of the policy a decision was made under, kept with every decision record.

    A short SHA-256 over every number and text this module sets that a decision depends on
    (costs, band floors, reason catalogue, reasons per decline) and the served model's own
    threshold and score scaling: two decisions share a policy version exactly when the same
    model output would have been decided, scored, banded and explained the same way.
    """
    canonical = {
        "costs": asdict(COSTS),
        "band_floors": {band: str(floor) for band, floor in BAND_FLOORS.items()},
        "reasons": REASONS,
        "max_reason_codes": MAX_REASON_CODES,
        "threshold": repr(float(threshold)),
        "scaling": asdict(scaling),
    }
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return f"policy:{digest[:16]}"
