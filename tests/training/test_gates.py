"""Quality gates: each verdict at its bound, blocking versus warning, and the PSI figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from credit_risk.policy import SCALING
from credit_risk.schema import FEATURES
from credit_risk.training.champion import NO_MODEL, Comparison
from credit_risk.training.data import load_dataset
from credit_risk.training.gates import (
    NO_PREVIOUS_DATA,
    GateFailedError,
    GateSettings,
    check,
    evaluate,
    feature_psi,
)
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import training_distribution
from credit_risk.training.roc_comparison import AucDifference

HELD_OUT = {"brier": 0.16, "bad_rate": 0.30}
FAIR = {"adverse_impact_ratio": 0.9}


def _against(candidate: float, champion: float, std_error: float) -> Comparison:
    """A comparison with the champion: both AUCs on 200 rows and the SE of the difference."""
    auc = AucDifference(candidate, champion, std_error, bad=60, good=140)
    return Comparison("compared", "", "credit_risk:old", "promotion state", 200, "", auc)


def _gates(settings: GateSettings | None = None, **overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "protocol_auc": 0.78,
        "champion": _against(0.78, 0.785, 0.01),
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
    # the one-sided 95 % upper bound of the difference: -0.005 + 1.645 x 0.01
    assert gates["champion"].figure == pytest.approx(-0.005 + 1.6449 * 0.01, abs=1e-4)
    assert "90 % CI [-0.0214, +0.0114]" in gates["champion"].description
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
        ({"champion": _against(0.74, 0.80, 0.02)}, "champion"),
        ({"held_out": {"brier": 0.21, "bad_rate": 0.3}}, "brier"),
        ({"mean_p_test": 0.36}, "calibration"),
    ],
)
def test_blocking_gates_fail_past_their_bound(overrides: dict[str, Any], gate: str) -> None:
    gates = _gates(**overrides)
    assert gates[gate].status == "failed"
    assert [g.name for g in gates.values() if not g.passed] == [gate]


def test_champion_fails_only_when_worse_beyond_the_tolerance_with_confidence() -> None:
    """Upper bound of the one-sided 95 % interval below -0.01 fails; anything else passes."""
    z = 1.6448536269514722
    at_the_edge = 0.01 / z  # with this SE the difference -0.02 has its bound at -0.01
    assert _gates(champion=_against(0.77, 0.79, at_the_edge * 1.01))["champion"].passed
    assert not _gates(champion=_against(0.77, 0.79, at_the_edge * 0.99))["champion"].passed
    # a far larger drop measured on too few rows to be sure of it passes
    assert _gates(champion=_against(0.70, 0.79, 0.06))["champion"].passed
    # a stricter confidence widens the interval: the same figures pass
    strict = GateSettings(champion_confidence=0.99)
    assert _gates(strict, champion=_against(0.77, 0.79, at_the_edge * 0.99))["champion"].passed
    # and a wider tolerance moves the bound
    loose = GateSettings(champion_tolerance=0.05)
    assert _gates(loose, champion=_against(0.74, 0.79, 0.001))["champion"].passed


def test_champion_is_skipped_with_its_reason_when_there_is_none_to_score() -> None:
    skipped = _gates(champion=Comparison("no_champion", NO_MODEL))["champion"]
    assert (skipped.status, skipped.description) == ("skipped", NO_MODEL)
    unusable = _gates(champion=Comparison("unusable", "champion (promotion state): gone"))
    assert unusable["champion"].status == "skipped"
    assert unusable["champion"].description == "no comparison: champion (promotion state): gone"
    check(list(unusable.values()))


def test_stability_is_skipped_without_previous_training_data() -> None:
    gate = _gates(psi_by_feature=None)["stability"]
    assert (gate.status, gate.description) == ("skipped", NO_PREVIOUS_DATA)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"champion_confidence": 0.5}, "champion_confidence must be above 0.5 and below 1"),
        ({"champion_confidence": 1.0}, "champion_confidence must be above 0.5 and below 1"),
        ({"champion_tolerance": -0.01}, "champion_tolerance must be 0 or more"),
    ],
)
def test_settings_refuse_a_meaningless_champion_rule(
    settings: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GateSettings(**settings)  # type: ignore[arg-type]


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
