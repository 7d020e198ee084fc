"""From model output to what a lender acts on: score points, risk band, decision, reasons.

The numbers come from `credit_risk.policy`; this module applies them to a batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from credit_risk.arrays import FloatArray
from credit_risk.policy import (
    MAX_REASON_CODES,
    REASONS,
    RISK_BANDS,
    ScoreScaling,
    policy_version,
    score_and_band,
)
from credit_risk.recourse import RecourseColumns
from credit_risk.schema import FEATURES, Decision

DECISION_ID_BYTES: Final = 16
"""Bytes per decision id: a millisecond clock, then random bytes, as a UUIDv7 orders them."""
DECISION_ID_CLOCK_BYTES: Final = 6
"""The id's first 48 bits, milliseconds since 1970: ids made later sort later, so the store's
key index grows at its end instead of at random pages (1,000 inserts into a SQLite store of
150,000: 22 ms time-ordered against 96 ms random, and the random cost grows with the store)."""
DECISION_ID_RANDOM_BYTES: Final = DECISION_ID_BYTES - DECISION_ID_CLOCK_BYTES
"""80 random bits per id: unguessable, and no collision within a millisecond in practice."""


def top_reasons(excess_points: FloatArray, k: int = MAX_REASON_CODES) -> npt.NDArray[np.intp]:
    """Indices of the k features costing most points per row, largest first (ties by order)."""
    order = np.argsort(-excess_points, axis=1, kind="stable")
    return order[:, :k]


@dataclass(frozen=True)
class DecisionColumns:
    """One batch's decisions as columns: the API's answers and the bulk output both read these."""

    probability: FloatArray
    score: npt.NDArray[np.int64]
    band: npt.NDArray[np.intp]
    """Index into `RISK_BANDS`."""
    declined: npt.NDArray[np.bool_]
    reason_feature: npt.NDArray[np.intp]
    """(n, MAX_REASON_CODES) feature indices, the costliest first."""
    reason_points: FloatArray
    """(n, MAX_REASON_CODES) points each reason cost (negative), as the answer states them."""
    reason_count: npt.NDArray[np.intp]
    """Reasons disclosed per row: only for declines, only fields that cost points."""
    recourse: RecourseColumns | None = None
    """What would turn each decline into an approval (credit_risk/recourse.py), where the
    caller computed it (the runner and the portfolio job do)."""


@dataclass(frozen=True)
class DecisionRule:
    """What turns model output into decisions: the model's threshold, scaling and tag."""

    threshold: float
    scaling: ScoreScaling
    model_version: str

    @classmethod
    def from_model(cls, tag: str, metadata: dict[str, Any]) -> DecisionRule:
        """The rule a stored model decides by: its threshold and score scaling."""
        return cls(
            threshold=float(metadata["threshold"]),
            scaling=ScoreScaling.from_metadata(metadata["score_scaling"]),
            model_version=tag,
        )

    def declines(self, probability: FloatArray) -> npt.NDArray[np.bool_]:
        """The decision itself: decline when the probability of default exceeds the threshold."""
        result: npt.NDArray[np.bool_] = probability > self.threshold
        return result

    @cached_property
    def policy_version(self) -> str:
        """The policy version every decision of this rule is recorded with (policy.py)."""
        return policy_version(self.threshold, self.scaling)

    def columns(
        self,
        probability: FloatArray,
        excess_logit: FloatArray,
        recourse: RecourseColumns | None = None,
    ) -> DecisionColumns:
        """The one decision function, vectorised over the batch: score, band, decision, reasons.

        Score and band follow `credit_risk.policy.score_and_band` (the band is cut from the
        score as shown). Reasons are ranked for declined rows only: approvals disclose none.
        """
        n = len(probability)
        assert excess_logit.shape == (n, len(FEATURES)), excess_logit.shape
        scores, bands = score_and_band(probability, self.scaling)
        declined = self.declines(probability)
        rows = np.flatnonzero(declined)
        excess_points = np.round(excess_logit[rows] * self.scaling.factor, 2)
        top = top_reasons(excess_points)
        lost = np.take_along_axis(excess_points, top, axis=1)
        reason_feature = np.zeros((n, MAX_REASON_CODES), dtype=np.intp)
        reason_points = np.zeros((n, MAX_REASON_CODES), dtype=np.float64)
        count = np.zeros(n, dtype=np.intp)
        reason_feature[rows] = top
        reason_points[rows] = -lost
        # `top` is sorted by points lost, so the reasons that cost points are a prefix
        count[rows] = (lost > 0).sum(axis=1)
        return DecisionColumns(
            probability=probability,
            score=scores,
            band=bands,
            declined=declined,
            reason_feature=reason_feature,
            reason_points=reason_points,
            reason_count=count,
            recourse=recourse,
        )

    def records(
        self,
        probability: FloatArray,
        excess_logit: FloatArray,
        recourse: RecourseColumns | None = None,
    ) -> list[dict[str, Any]]:
        """Decisions as plain dicts in the `Decision` layout: the serving hot path.

        Everything numeric is `columns`; the loop only assembles the answer. Building
        pydantic objects here cost ~20 us per applicant, more than the model.
        """
        c = self.columns(probability, excess_logit, recourse)
        n = len(probability)
        recourses = c.recourse.records() if c.recourse is not None else [None] * n
        scores = c.score.tolist()
        bands = [RISK_BANDS[b] for b in c.band.tolist()]
        declined = c.declined.tolist()
        top = c.reason_feature.tolist()
        points = c.reason_points.tolist()
        counts = c.reason_count.tolist()
        probabilities = probability.tolist()
        clock = f"{time.time_ns() // 1_000_000:0{2 * DECISION_ID_CLOCK_BYTES}x}"
        tails = os.urandom(DECISION_ID_RANDOM_BYTES * n).hex()  # one syscall for the batch
        width = 2 * DECISION_ID_RANDOM_BYTES
        out = []
        for i in range(n):
            k = counts[i]
            reasons = (
                [
                    _REASON_RECORDS[j] | {"points": p}
                    for j, p in zip(top[i][:k], points[i][:k], strict=True)
                ]
                if k
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
                    "recourse": recourses[i],
                    "model_version": self.model_version,
                    "decision_id": clock + tails[i * width : (i + 1) * width],
                    "application_id": None,
                }
            )
        return out

    def decide(
        self,
        probability: FloatArray,
        excess_logit: FloatArray,
        recourse: RecourseColumns | None = None,
    ) -> list[Decision]:
        """The same decisions as validated `Decision` objects (for library use and tests)."""
        records = self.records(probability, excess_logit, recourse)
        return [Decision.model_validate(r) for r in records]


_REASON_RECORDS: Final = tuple(
    {"code": REASONS[f][0], "feature": f, "description": REASONS[f][1]} for f in FEATURES
)
"""Per feature index, the fixed part of its reason-code record."""
