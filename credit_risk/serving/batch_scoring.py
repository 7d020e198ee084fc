"""What the runner does with one adaptive batch: score it, find the declines' recourse,
shadow-score it, watch it drift.

The runner process loads the champion (and the challenger, if one is named) once; each batch of
code rows (credit_risk/encoding.py) is scored by the compiled scorer, the recourse of its
declines is appended (credit_risk/recourse.py: the API only puts it in words), then the
challenger's decided columns (serving/shadow.py), and the drift window takes the rows in.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from credit_risk.arrays import FloatArray
from credit_risk.decisions import DecisionRule
from credit_risk.model_store import ModelLoadError, RegistryError, ServingModel, load_serving_model
from credit_risk.policy import ScoreScaling
from credit_risk.recourse import RecourseFinder
from credit_risk.serving import metrics
from credit_risk.serving.drift import DriftMonitor
from credit_risk.serving.shadow import ShadowScorer, check_same_schema
from credit_risk.serving.tuning import DRIFT_PUBLISH_INTERVAL_S
from credit_risk.serving.workarounds.model_reference import (
    challenger_message,
    refuse_unservable_model,
)
from credit_risk.stability import signals_from_metadata


class BatchScoring:
    """The champion's compiled scorer, the challenger's in shadow, and the drift window."""

    def __init__(self, champion: ServingModel, challenger: ServingModel | None, window: int):
        meta = champion.metadata
        self.champion_tag = champion.tag
        self.challenger_tag = challenger.tag if challenger else None
        self.model = champion.scorer
        rule = DecisionRule.from_model(champion.tag, meta)
        self.recourse = RecourseFinder.for_model(champion.scorer, rule)
        self.shadow = (
            ShadowScorer(
                challenger.scorer,
                DecisionRule.from_model(challenger.tag, challenger.metadata),
                rule,
            )
            if challenger
            else None
        )
        self.scaling = ScoreScaling.from_metadata(meta["score_scaling"])
        self.drift = DriftMonitor(signals_from_metadata(meta["training_distribution"]), window)
        self._drift_publish_scheduled = False
        metrics.MODEL_INFO.labels(model_version=champion.tag).set(1)

    @classmethod
    def load(cls, champion_ref: Any, challenger_ref: Any | None, window: int) -> BatchScoring:
        """Both referenced models loaded; an unservable one stops the server with one line."""
        with refuse_unservable_model():
            champion = load_serving_model(str(champion_ref.tag))
            challenger = _load_challenger(challenger_ref, champion)
        return cls(champion, challenger, window)

    def score(self, codes: FloatArray) -> FloatArray:
        """Rows of the code array -> [P(default), excess log-odds per feature, recourse] per
        row, then the challenger's decided columns when there is one and it scored
        (serving/shadow.py)."""
        start = time.perf_counter()
        proba, excess = self.model.predict(codes)
        recourse = self.recourse.columns(codes, proba)
        out = np.column_stack([proba, excess, recourse.as_array()])
        assert len(out) == len(codes), "one result per input row"
        if self.shadow is not None:
            out = self.shadow.append(out, codes)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - start)
        metrics.BATCH_ROWS.observe(len(codes))
        self._observe_drift(codes, proba)
        return out

    def _observe_drift(self, codes: FloatArray, proba: FloatArray) -> None:
        self.drift.observe(codes, self.scaling.score(proba))
        if not self._drift_publish_scheduled:  # PSI over ~20 signals: at most once per interval
            self._drift_publish_scheduled = True
            asyncio.get_running_loop().call_later(DRIFT_PUBLISH_INTERVAL_S, self._publish_drift)

    def _publish_drift(self) -> None:
        self._drift_publish_scheduled = False
        metrics.DRIFT_WINDOW.set(min(self.drift.seen, self.drift.window))
        if self.drift.full:
            for signal, value in self.drift.psi().items():
                metrics.DRIFT_PSI.labels(signal=signal).set(value)


def _load_challenger(ref: Any | None, champion: ServingModel) -> ServingModel | None:
    """The challenger, scoring the same inputs as the champion; refused like the champion."""
    if ref is None:
        return None
    try:
        challenger = load_serving_model(str(ref.tag))
        check_same_schema(champion.metadata, challenger.metadata, challenger.tag)
    except RegistryError as exc:
        raise ModelLoadError(challenger_message(exc)) from None
    return challenger
