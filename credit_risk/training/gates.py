"""Quality gates: what a retrained model must show before it may enter the model store.

Every gate has its default in `GateSettings`, is configurable, and lands in the report and in
MLflow with its figure and bound, whether it passed, warned or failed. A failing blocking gate
stops the run before anything is saved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import bentoml
import numpy as np
from bentoml.exceptions import NotFound

from credit_risk.arrays import FloatArray
from credit_risk.model_store import DEFAULT_TAG
from credit_risk.schema import FEATURES
from credit_risk.stability import PSI_ALERT, psi, signals_from_metadata
from credit_risk.training.fairness import FOUR_FIFTHS

Status = Literal["passed", "warning", "failed"]

NO_INCUMBENT: Final = "no model in the store to compare with: passed"


@dataclass(frozen=True)
class GateSettings:
    """The gates' bounds and which of them block; the defaults are the project's policy."""

    auc_floor: float = 0.75
    """Protocol ROC AUC at least this."""
    champion_tolerance: float = 0.01
    """Protocol ROC AUC at most this much below the incumbent's, on the same protocol."""
    brier_max: float = 0.20
    """Held-out Brier score at most this (always predicting the 30 % bad rate scores 0.21)."""
    calibration_tolerance: float = 0.05
    """|mean predicted P(bad) - observed bad rate| on the held-out split at most this."""
    psi_max: float = PSI_ALERT
    """PSI of each feature against the incumbent's training data: warn above this."""
    psi_blocking: bool = False
    air_min: float = FOUR_FIFTHS
    """Adverse impact ratio by sex and by age band at least this (the four-fifths rule)."""
    fairness_blocking: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain values for the report and MLflow parameters."""
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the figure it rests on."""

    name: str
    figure: float
    bound: float
    passed: bool
    blocking: bool
    description: str

    @property
    def status(self) -> Status:
        """`failed` stops the run; `warning` is a failed gate that does not block."""
        if self.passed:
            return "passed"
        return "failed" if self.blocking else "warning"

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {**asdict(self), "status": self.status}

    def line(self) -> str:
        """One line for logs and for the failure message."""
        return f"gate {self.name} {self.status}: {self.description}"


class GateFailedError(RuntimeError):
    """A blocking gate failed: the message names the gate and its figure."""


@dataclass(frozen=True)
class Incumbent:
    """The model a new one would replace, and its figure on this run's protocol."""

    tag: str
    metadata: dict[str, Any]


def incumbent() -> Incumbent | None:
    """The model a new one would replace: today the store's latest `credit_risk`.

    The one place to switch to the promoted champion once a promotion state exists.
    """
    try:
        model = bentoml.models.get(DEFAULT_TAG)
    except NotFound:
        return None
    return Incumbent(str(model.tag), dict(model.info.metadata))


def feature_psi(distribution: dict[str, Any], X_train: FloatArray) -> dict[str, float]:  # noqa: N803
    """PSI of each feature of `X_train` against a stored training distribution's bins."""
    out = {}
    for signal in signals_from_metadata(distribution):
        if signal.name == "score":
            continue
        values = X_train[:, FEATURES.index(signal.name)]
        bins = np.clip(signal.bins(values), 0, len(signal.expected) - 1)
        out[signal.name] = psi(signal.expected, np.bincount(bins, minlength=len(signal.expected)))
    return out


def evaluate(
    settings: GateSettings,
    *,
    protocol_auc: float,
    incumbent_auc: tuple[str, float] | None,
    held_out: dict[str, Any],
    mean_p_test: float,
    psi_by_feature: dict[str, float] | None,
    fairness: dict[str, Any],
) -> list[GateResult]:
    """Every gate's verdict, in the order the report lists them."""
    s = settings
    gates = [
        GateResult(
            "auc_floor",
            protocol_auc,
            s.auc_floor,
            protocol_auc >= s.auc_floor,
            True,
            f"protocol ROC AUC {protocol_auc:.4f} (at least {s.auc_floor})",
        ),
        _champion_gate(s, protocol_auc, incumbent_auc),
        GateResult(
            "brier",
            held_out["brier"],
            s.brier_max,
            held_out["brier"] <= s.brier_max,
            True,
            f"held-out Brier score {held_out['brier']:.4f} (at most {s.brier_max})",
        ),
    ]
    gap = abs(mean_p_test - held_out["bad_rate"])
    gates.append(
        GateResult(
            "calibration",
            gap,
            s.calibration_tolerance,
            gap <= s.calibration_tolerance,
            True,
            f"held-out mean P(bad) {mean_p_test:.4f} vs bad rate {held_out['bad_rate']:.4f}: "
            f"gap {gap:.4f} (at most {s.calibration_tolerance})",
        )
    )
    gates.append(_psi_gate(s, psi_by_feature))
    air = float(fairness["adverse_impact_ratio"])
    gates.append(
        GateResult(
            "fairness",
            air,
            s.air_min,
            not math.isnan(air) and air >= s.air_min,
            s.fairness_blocking,
            f"smallest adverse impact ratio (sex, age band) {air:.3f} (at least {s.air_min})",
        )
    )
    return gates


def _champion_gate(
    s: GateSettings, protocol_auc: float, incumbent_auc: tuple[str, float] | None
) -> GateResult:
    if incumbent_auc is None:
        return GateResult("champion", 0.0, s.champion_tolerance, True, True, NO_INCUMBENT)
    tag, auc = incumbent_auc
    drop = auc - protocol_auc
    return GateResult(
        "champion",
        drop,
        s.champion_tolerance,
        drop <= s.champion_tolerance,
        True,
        f"protocol ROC AUC {protocol_auc:.4f} vs {auc:.4f} for {tag}'s configuration: "
        f"drop {drop:+.4f} (at most {s.champion_tolerance})",
    )


def _psi_gate(s: GateSettings, psi_by_feature: dict[str, float] | None) -> GateResult:
    if not psi_by_feature:
        return GateResult(
            "stability", 0.0, s.psi_max, True, s.psi_blocking, "no previous training data: passed"
        )
    worst = max(psi_by_feature, key=lambda name: psi_by_feature[name])
    value = psi_by_feature[worst]
    return GateResult(
        "stability",
        value,
        s.psi_max,
        value <= s.psi_max,
        s.psi_blocking,
        f"largest feature PSI {value:.4f} ({worst}) against the previous model's training "
        f"data (at most {s.psi_max})",
    )


def check(gates: list[GateResult]) -> None:
    """Raise GateFailedError naming every failed blocking gate and its figure."""
    failed = [g for g in gates if g.status == "failed"]
    if failed:
        raise GateFailedError("; ".join(g.line() for g in failed))
