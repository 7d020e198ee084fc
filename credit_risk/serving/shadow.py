"""Shadow scoring: the challenger's decisions beside the champion's, recorded and never returned.

The runner scores each batch with both models and decides the challenger's side there, by the
challenger's own threshold and scaling, vectorised over the whole batch: it appends a few
numeric columns (P(default), score, band, declined, reason indices) to the champion's and
counts agreement, swaps and the score difference. The API only turns those columns into the
compact record logged under the `challenger` key. Deciding per request in the API cost ~0.1 ms
per /classify call on the loaded API workers (measured), about a tenth of their time; per
runner batch it is shared by every request in the batch.

An error anywhere on the challenger's side loses its records (counted in
`credit_risk_shadow_failures`), never the champion's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np

from credit_risk.arrays import FloatArray
from credit_risk.compiled import Scorer
from credit_risk.decisions import DecisionRule
from credit_risk.model_store import ModelMismatchError
from credit_risk.policy import MAX_REASON_CODES, REASONS, RISK_BANDS, shown_scores
from credit_risk.recourse import RECOURSE_COLUMNS
from credit_risk.schema import FEATURES, contract_hash
from credit_risk.serving import metrics

logger = logging.getLogger(__name__)

WIDTH: Final = 1 + len(FEATURES) + RECOURSE_COLUMNS
"""The champion's columns in the runner's answer: P(default), excess per feature, recourse."""
SHADOW_COLUMNS: Final = 4 + MAX_REASON_CODES
"""The challenger's columns after them: P(default), score, band index, declined (0/1), then
the feature index of each reason code (-1 where there is none)."""
REASON_CODES: Final = tuple(REASONS[f][0] for f in FEATURES)
"""Reason code per feature index."""

ShadowRecord = dict[str, Any] | None


def check_same_schema(champion: dict[str, Any], challenger: dict[str, Any], tag: str) -> None:
    """Refuse a challenger made for other inputs than the champion: its scores would not
    be for the same applicants."""
    if contract_hash(champion.get("schema_hash")) != contract_hash(challenger.get("schema_hash")):
        msg = (
            f"challenger {tag} was trained for applicant schema "
            f"{challenger.get('schema_hash')!r}, the champion for {champion.get('schema_hash')!r}"
        )
        raise ModelMismatchError(msg)


@dataclass(frozen=True)
class ShadowScorer:
    """Runner side: the challenger's scorer and both models' rules."""

    scorer: Scorer
    challenger: DecisionRule
    champion: DecisionRule

    @property
    def labels(self) -> tuple[str, str]:
        """Metric labels: champion version, challenger version."""
        return (self.champion.model_version, self.challenger.model_version)

    @cached_property
    def _counters(self) -> dict[str, Any]:
        """The labelled metric children, looked up once (a lookup costs a lock per call)."""
        children: dict[str, Any] = {
            c: metrics.SHADOW_COMPARISONS.labels(*self.labels, c)
            for c in ("agree", "swap_in", "swap_out")
        }
        for decision in ("approve", "decline"):
            children[decision] = metrics.SHADOW_DECISIONS.labels(*self.labels, decision)
        children["score_difference"] = metrics.SHADOW_SCORE_DIFFERENCE.labels(*self.labels)
        return children

    def append(self, out: FloatArray, codes: FloatArray) -> FloatArray:
        """The champion's columns plus the challenger's decided ones, or the champion's alone
        (counted) if the challenger fails on this batch."""
        try:
            proba, excess = self.scorer.predict(codes)
            columns = self._decide(np.asarray(proba), np.asarray(excess))
            both = np.column_stack([out, columns])
            if both.shape != (len(codes), WIDTH + SHADOW_COLUMNS):
                msg = f"challenger answered shape {both.shape} for {len(codes)} rows"
                raise ValueError(msg)
            self._compare(out[:, 0], columns)
        except Exception as exc:  # any failure of the challenger costs only its own records
            metrics.SHADOW_FAILURES.labels(*self.labels, "score").inc(len(codes))
            logger.warning("challenger lost %d records while scoring: %r", len(codes), exc)
            return out
        return both

    def _decide(self, proba: FloatArray, excess_logit: FloatArray) -> FloatArray:
        c = self.challenger.columns(proba, excess_logit)
        shown = np.arange(MAX_REASON_CODES) < c.reason_count[:, None]
        reasons = np.where(shown, c.reason_feature, -1)
        return np.column_stack([c.probability, c.score, c.band, c.declined, reasons])

    def _compare(self, champion_proba: FloatArray, columns: FloatArray) -> None:
        ours = champion_proba <= self.champion.threshold  # approved by the champion
        theirs = columns[:, 3] == 0
        counts = {
            "agree": int((ours == theirs).sum()),
            "swap_in": int((theirs & ~ours).sum()),
            "swap_out": int((ours & ~theirs).sum()),
            "approve": int(theirs.sum()),
            "decline": int((~theirs).sum()),
        }
        for counter, count in counts.items():
            if count:
                self._counters[counter].inc(count)
        champion_score = shown_scores(champion_proba, self.champion.scaling)
        metrics.observe_all(self._counters["score_difference"], columns[:, 1] - champion_score)


@dataclass(frozen=True)
class Shadow:
    """API side: the challenger's columns as the records the decision log keeps."""

    version: str
    metadata: dict[str, Any]
    champion_version: str

    def records(self, n: int, out: FloatArray) -> list[ShadowRecord]:
        """One challenger record per decision; all None if they were lost."""
        try:
            if out.shape[1] < WIDTH + SHADOW_COLUMNS:  # the runner lost them (and counted it)
                return [None] * n
            return self._records(out[:, WIDTH : WIDTH + SHADOW_COLUMNS])
        except Exception as exc:  # any failure of the challenger costs only its own records
            labels = (self.champion_version, self.version)
            metrics.SHADOW_FAILURES.labels(*labels, "decide").inc(n)
            logger.warning("challenger lost %d records while recording: %r", n, exc)
            return [None] * n

    def _records(self, columns: FloatArray) -> list[ShadowRecord]:
        version, threshold = self.version, float(self.metadata["threshold"])
        return [
            {
                "model_version": version,
                "probability_of_default": p,
                "score": int(score),
                "risk_band": RISK_BANDS[int(band)],
                "decision": "decline" if declined else "approve",
                "threshold": threshold,
                "reason_codes": _codes(reasons),
            }
            for p, score, band, declined, *reasons in columns.tolist()
        ]


def _codes(reasons: Sequence[float]) -> str:
    return ",".join(REASON_CODES[int(j)] for j in reasons if j >= 0)
