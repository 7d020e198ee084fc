"""Quality gates: each verdict at its bound, blocking versus warning, and the PSI figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from credit_risk.policy import SCALING
from credit_risk.schema import FEATURES
from credit_risk.training.data import load_dataset
from credit_risk.training.gates import (
    NO_INCUMBENT,
    GateFailedError,
    GateSettings,
    check,
    evaluate,
    feature_psi,
)
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import training_distribution

HELD_OUT = {"brier": 0.16, "bad_rate": 0.30}
FAIR = {"adverse_impact_ratio": 0.9}


def _gates(settings: GateSettings | None = None, **overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "protocol_auc": 0.78,
        "incumbent_auc": ("credit_risk:old", 0.785),
        "held_out": HELD_OUT,
        "mean_p_test": 0.31,
        "psi_by_feature": {"age_years": 0.02, "purpose": 0.05},
        "fairness": FAIR,
    } | overrides
    return {g.name: g for g in evaluate(settings or GateSettings(), **figures)}


def test_defaults_pass_a_good_model_and_every_gate_is_reported() -> None:
    gates = _gates()
    assert list(gates) == ["auc_floor", "champion", "brier", "calibration", "stability", "fairness"]
    assert {g.status for g in gates.values()} == {"passed"}
    assert gates["champion"].figure == pytest.approx(0.005)
    assert gates["calibration"].figure == pytest.approx(0.01)
    assert gates["stability"].figure == 0.05
    assert "purpose" in gates["stability"].description
    check(list(gates.values()))


def test_auc_floor_fails_and_check_names_gate_and_figure() -> None:
    gates = _gates(GateSettings(auc_floor=0.99))
    assert gates["auc_floor"].status == "failed"
    with pytest.raises(GateFailedError, match=r"gate auc_floor failed: protocol ROC AUC 0\.7800"):
        check(list(gates.values()))


@pytest.mark.parametrize(
    ("overrides", "gate"),
    [
        ({"incumbent_auc": ("credit_risk:old", 0.80)}, "champion"),
        ({"held_out": {"brier": 0.21, "bad_rate": 0.3}}, "brier"),
        ({"mean_p_test": 0.36}, "calibration"),
    ],
)
def test_blocking_gates_fail_past_their_bound(overrides: dict[str, Any], gate: str) -> None:
    gates = _gates(**overrides)
    assert gates[gate].status == "failed"
    assert [g.name for g in gates.values() if not g.passed] == [gate]


def test_champion_passes_and_says_so_without_an_incumbent() -> None:
    gate = _gates(incumbent_auc=None)["champion"]
    assert gate.passed
    assert gate.description == NO_INCUMBENT


def test_fairness_and_stability_warn_unless_made_blocking() -> None:
    unfair = {"fairness": {"adverse_impact_ratio": 0.7}, "psi_by_feature": {"age_years": 0.4}}
    gates = _gates(**unfair)
    assert gates["fairness"].status == "warning"
    assert gates["stability"].status == "warning"
    check(list(gates.values()))
    strict = _gates(GateSettings(fairness_blocking=True, psi_blocking=True), **unfair)
    assert strict["fairness"].status == "failed"
    with pytest.raises(GateFailedError, match=r"gate stability failed: largest feature PSI 0\.40"):
        check(list(strict.values()))


def test_feature_psi_is_near_zero_on_the_same_data_and_flags_a_shift() -> None:
    dataset = load_dataset()
    codes = encode_frame(dataset.X)
    reference = training_distribution(codes, np.full(len(codes), 0.3), SCALING)
    same = feature_psi(reference, codes)
    assert set(same) == set(FEATURES)
    assert max(same.values()) < 1e-3
    older = codes.copy()
    older[:, FEATURES.index("age_years")] += 15
    shifted = feature_psi(reference, older)
    assert shifted["age_years"] > 0.25
    assert shifted["duration_months"] < 1e-3
