"""The model a candidate would replace, scored as it is served, beside the candidate.

The champion is what serving resolves now (`promotion.served_tags`: the pin, else the promoted
champion, else the newest model). It is loaded from the store and scored with its own stored
scorer (compiled scorecard or pipeline), never refitted, on the candidate's held-out rows, and
the two ROC AUCs are compared by DeLong's paired test (`roc_comparison`). The verdict (how
much worse, with what confidence) is the champion gate's, in `gates`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from credit_risk import model_store, promotion
from credit_risk.arrays import FloatArray, IntArray
from credit_risk.training.holdout import held_out_rows
from credit_risk.training.roc_comparison import AucDifference, delong

BoolArray = npt.NDArray[np.bool_]

Outcome = Literal["compared", "no_champion", "unusable"]

NO_MODEL = "no model in the store to compare with"


@dataclass(frozen=True)
class Champion:
    """The served champion: its exact tag, where that choice came from, and its model."""

    tag: str
    source: str
    model: model_store.ServingModel = field(repr=False)


@dataclass(frozen=True)
class EvaluationRows:
    """The candidate's held-out rows: codes, outcomes and their row numbers in the data file."""

    codes: FloatArray
    y: IntArray
    rows: IntArray
    p_candidate: FloatArray
    data_sha256: str
    y_all: IntArray
    """Every outcome of the data file: a champion's held-out split is recomputed from it."""


@dataclass(frozen=True)
class Comparison:
    """What the champion gate judges: both AUCs on the same rows, or why there are none."""

    outcome: Outcome
    reason: str
    champion: str | None = None
    champion_source: str | None = None
    rows: int = 0
    rows_note: str = ""
    auc: AucDifference | None = None
    training_distribution: dict[str, Any] | None = field(default=None, repr=False)
    """The champion's stored training distribution, for the stability gate."""

    def as_dict(self, confidence: float) -> dict[str, Any]:
        """JSON form for the report, with the interval at a one-sided `confidence` (its
        two-sided interval at 2 x confidence - 1 has the same upper end). No None values: the
        model store refuses them."""
        out: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason}
        if self.champion is not None:
            out |= {"champion": self.champion, "champion_source": self.champion_source}
        if self.auc is not None:
            out |= {
                "rows": self.rows,
                "rows_note": self.rows_note,
                "bad": self.auc.bad,
                "good": self.auc.good,
                "candidate_roc_auc": self.auc.auc_a,
                "champion_roc_auc": self.auc.auc_b,
                "difference": self.auc.difference,
                "std_error": self.auc.std_error,
                "interval_level": 2 * confidence - 1,
                "interval": list(self.auc.interval(2 * confidence - 1)),
                "method": "DeLong's test for two correlated ROC curves",
            }
        return out


def resolve() -> Champion | Comparison:
    """The champion serving would use now, or the comparison that cannot be made without it."""
    try:
        served = promotion.served_tags()
    except ValueError as exc:  # a promotion state that cannot be read
        return Comparison("unusable", f"cannot tell which model is champion: {exc}")
    try:
        model = model_store.load_serving_model(served.champion)
    except model_store.ModelNotFoundError as exc:
        if served.champion == model_store.DEFAULT_TAG:
            return Comparison("no_champion", NO_MODEL)
        return Comparison("unusable", f"champion ({served.champion_source}): {exc}")
    except model_store.RegistryError as exc:
        return Comparison("unusable", f"champion ({served.champion_source}): {exc}")
    return Champion(model.tag, served.champion_source, model)


def compare(champion: Champion, evaluation: EvaluationRows) -> Comparison:
    """Candidate and champion ROC AUC on the held-out rows neither of them was trained on."""
    keep, note = _unseen(champion.model.metadata, evaluation)
    y = evaluation.y[keep]
    known = Comparison(
        "unusable",
        "",
        champion=champion.tag,
        champion_source=champion.source,
        training_distribution=champion.model.metadata.get("training_distribution"),
    )
    try:
        p_champion, _ = champion.model.scorer.predict(evaluation.codes[keep])
        auc = delong(y, evaluation.p_candidate[keep], p_champion)
    except ValueError as exc:
        return replace(known, reason=f"{len(y)} rows to compare on: {exc}")
    return replace(known, outcome="compared", rows=len(y), rows_note=note, auc=auc)


def _unseen(metadata: dict[str, Any], evaluation: EvaluationRows) -> tuple[BoolArray, str]:
    """Which held-out rows the champion never trained on, and how that is known."""
    everything = np.ones(len(evaluation.y), dtype=bool)
    seed = metadata.get("seed")
    if metadata.get("data_sha256") != evaluation.data_sha256 or not isinstance(seed, int):
        return everything, (
            "the champion was trained on another data file: it may have seen some of these rows"
        )
    champion_held_out = held_out_rows(evaluation.y_all, seed)
    keep = np.isin(evaluation.rows, champion_held_out)
    if keep.all():
        return keep, "neither model was trained on any of them"
    return keep, (
        f"the {int((~keep).sum())} held-out rows the champion was trained on (seed {seed}) "
        "are left out"
    )
