"""Quality gates: what a retrained model must show before it may enter the model store.

Every gate has its default in `GateSettings`, is configurable, and lands in the report, the
model's metadata and MLflow with its figure and bound: passed, skipped (nothing to judge, with
the reason), warning (failed, not blocking) or failed. A failing blocking gate stops the run
before anything is saved, unless the gates are skipped on purpose (`--skip-gates`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np

from credit_risk.arrays import FloatArray
from credit_risk.schema import FEATURES
from credit_risk.stability import PSI_ALERT, psi, signals_from_metadata
from credit_risk.training.champion import Comparison
from credit_risk.training.fairness import FOUR_FIFTHS

Status = Literal["passed", "skipped", "warning", "failed"]

NO_PREVIOUS_DATA: Final = "no previous model's training data to compare with"


@dataclass(frozen=True)
class GateSettings:
    """The gates' bounds and which of them block; the defaults are the project's policy."""

    auc_floor: float = 0.75
    """Protocol ROC AUC at least this."""
    champion_tolerance: float = 0.01
    """Held-out ROC AUC at most this much below the champion's on the same rows..."""
    champion_confidence: float = 0.95
    """...unless shown with this confidence: fail when the one-sided upper bound of
    AUC(candidate) - AUC(champion) at this confidence is below -champion_tolerance."""
    brier_max: float = 0.20
    """Held-out Brier score at most this (always predicting the 30 % bad rate scores 0.21)."""
    calibration_tolerance: float = 0.05
    """|mean predicted P(bad) - observed bad rate| on the held-out split at most this."""
    psi_max: float = PSI_ALERT
    """PSI of each feature against the champion's training data: warn above this."""
    psi_blocking: bool = False
    air_min: float = FOUR_FIFTHS
    """Adverse impact ratio by sex and by age band at least this (the four-fifths rule)."""
    fairness_blocking: bool = False

    def __post_init__(self) -> None:
        if not 0.5 < self.champion_confidence < 1:
            msg = (
                f"champion_confidence must be above 0.5 and below 1, not {self.champion_confidence}"
            )
            raise ValueError(msg)
        if self.champion_tolerance < 0:
            msg = f"champion_tolerance must be 0 or more, not {self.champion_tolerance}"
            raise ValueError(msg)

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
    skipped: bool = False
    """Nothing to judge (no champion, no previous training data): passes, saying why."""

    @property
    def status(self) -> Status:
        """`failed` stops the run; `warning` is a failed gate that does not block."""
        if self.skipped:
            return "skipped"
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
    champion: Comparison,
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
        _champion_gate(s, champion),
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


def _champion_gate(s: GateSettings, comparison: Comparison) -> GateResult:
    """Fails when the candidate is worse than the champion by more than the tolerance, with
    the stated confidence; passes when that is not shown. Skipped, with the reason, when
    there is no champion to score: none in the store, or one serving could not load either
    (blocking the retraining that replaces it would help no one)."""
    bound = -s.champion_tolerance
    if comparison.auc is None:  # nothing to compare with: no model, or one that cannot serve
        reason = comparison.reason
        if comparison.outcome != "no_champion":
            reason = f"no comparison: {reason}"
        return GateResult("champion", 0.0, bound, True, True, reason, skipped=True)
    auc = comparison.auc
    level = 2 * s.champion_confidence - 1
    low, high = auc.interval(level)
    upper = auc.upper_bound(s.champion_confidence)
    verdict = (
        f"its upper end is not below {bound:+g}"
        if upper >= bound
        else f"its upper end is below {bound:+g}: worse than the champion beyond the tolerance"
    )
    return GateResult(
        "champion",
        upper,
        bound,
        upper >= bound,
        True,
        f"held-out ROC AUC {auc.auc_a:.4f} vs {auc.auc_b:.4f} for champion "
        f"{comparison.champion} on {comparison.rows} rows: difference {auc.difference:+.4f}, "
        f"{100 * level:g} % CI [{low:+.4f}, {high:+.4f}] (DeLong); {verdict}",
    )


def _psi_gate(s: GateSettings, psi_by_feature: dict[str, float] | None) -> GateResult:
    if not psi_by_feature:
        return GateResult(
            "stability", 0.0, s.psi_max, True, s.psi_blocking, NO_PREVIOUS_DATA, skipped=True
        )
    worst = max(psi_by_feature, key=lambda name: psi_by_feature[name])
    value = psi_by_feature[worst]
    return GateResult(
        "stability",
        value,
        s.psi_max,
        value <= s.psi_max,
        s.psi_blocking,
        f"largest feature PSI {value:.4f} ({worst}) against the champion's training data "
        f"(at most {s.psi_max})",
    )


def check(gates: list[GateResult]) -> None:
    """Raise GateFailedError naming every failed blocking gate and its figure."""
    failed = [g for g in gates if g.status == "failed"]
    if failed:
        raise GateFailedError("; ".join(g.line() for g in failed))
