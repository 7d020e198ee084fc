"""Shadow scoring: the challenger's decisions beside the champion's, recorded and never returned.

The runner appends the challenger's columns (P(default), excess log-odds per feature) to the
champion's; the API decides with the champion and turns those columns into a compact record
under the `challenger` key of the decision log, decided by the challenger's own threshold and
scaling. An error anywhere on the challenger's side loses its records (counted in
`credit_risk_shadow_failures`), never the champion's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from credit_risk.decisions import DecisionRule
from credit_risk.encoding import FloatArray
from credit_risk.model_store import ModelMismatchError
from credit_risk.schema import FEATURES
from credit_risk.serving import metrics

logger = logging.getLogger(__name__)

WIDTH: Final = 1 + len(FEATURES)
"""Columns one model contributes to the runner's answer: P(default), then excess per feature."""
SHADOW_FIELDS: Final = (
    "model_version",
    "probability_of_default",
    "score",
    "risk_band",
    "decision",
    "threshold",
)

ShadowRecord = dict[str, Any] | None


def check_same_schema(champion: dict[str, Any], challenger: dict[str, Any], tag: str) -> None:
    """Refuse a challenger made for other inputs than the champion: its scores would not
    be for the same applicants."""
    if champion.get("schema_hash") != challenger.get("schema_hash"):
        msg = (
            f"challenger {tag} was trained for applicant schema "
            f"{challenger.get('schema_hash')!r}, the champion for {champion.get('schema_hash')!r}"
        )
        raise ModelMismatchError(msg)


def append_challenger(out: FloatArray, codes: FloatArray, challenger: Any, labels: Any) -> Any:
    """Runner side: the champion's columns plus the challenger's, or the champion's alone
    (counted) if the challenger fails on this batch."""
    try:
        proba, excess = challenger.predict(codes)
        both = np.column_stack([out, proba, excess])
        if both.shape != (len(codes), 2 * WIDTH):
            msg = f"challenger answered shape {both.shape} for {len(codes)} rows"
            raise ValueError(msg)
    except Exception as exc:  # any failure of the challenger costs only its own records
        metrics.SHADOW_FAILURES.labels(*labels, "score").inc(len(codes))
        logger.warning("challenger lost %d records while scoring: %r", len(codes), exc)
        return out
    return both


@dataclass(frozen=True)
class Shadow:
    """API side: turns the challenger's columns into records and compares them."""

    rule: DecisionRule
    champion_version: str

    @property
    def labels(self) -> tuple[str, str]:
        """Metric labels: champion version, challenger version."""
        return (self.champion_version, self.rule.model_version)

    def records(self, champion: Sequence[dict[str, Any]], out: FloatArray) -> list[ShadowRecord]:
        """One challenger record per champion decision; all None if they were lost."""
        try:
            if out.shape[1] < 2 * WIDTH:  # the runner lost them (and counted it)
                return [None] * len(champion)
            decided = self.rule.records(out[:, WIDTH], out[:, WIDTH + 1 : 2 * WIDTH])
            shadow: list[ShadowRecord] = [
                {k: d[k] for k in SHADOW_FIELDS}
                | {"reason_codes": ",".join(r["code"] for r in d["reason_codes"])}
                for d in decided
            ]
            self._compare(champion, decided)
        except Exception as exc:  # any failure of the challenger costs only its own records
            metrics.SHADOW_FAILURES.labels(*self.labels, "decide").inc(len(champion))
            logger.warning("challenger lost %d records while deciding: %r", len(champion), exc)
            return [None] * len(champion)
        return shadow

    def _compare(
        self, champion: Sequence[dict[str, Any]], challenger: Sequence[dict[str, Any]]
    ) -> None:
        ours = np.array([d["decision"] == "approve" for d in champion])
        theirs = np.array([d["decision"] == "approve" for d in challenger])
        counts = {
            "agree": int((ours == theirs).sum()),
            "swap_in": int((theirs & ~ours).sum()),
            "swap_out": int((ours & ~theirs).sum()),
        }
        for comparison, count in counts.items():
            if count:
                metrics.SHADOW_COMPARISONS.labels(*self.labels, comparison).inc(count)
        histogram = metrics.SHADOW_SCORE_DIFFERENCE.labels(*self.labels)
        for a, b in zip(champion, challenger, strict=True):
            histogram.observe(b["score"] - a["score"])
