"""The back-test groups decisions by the band of the score they show, whatever band was logged."""

from __future__ import annotations

from typing import Any

from credit_risk.backtest.inputs import Outcome
from credit_risk.backtest.report import markdown
from credit_risk.backtest.run import assemble


def _record(score: int, band: str, probability: float) -> dict[str, Any]:
    return {
        "model_version": "credit_risk:champion",
        "probability_of_default": probability,
        "score": score,
        "risk_band": band,
        "decision": "approve",
        "threshold": 0.17,
        "decided_at": "2025-01-02T00:00:00.000000Z",
    }


def test_a_logged_band_that_contradicts_its_score_is_recut() -> None:
    """Data row 715's answer before the fix: score 580 logged with band B (band A starts at
    580). Its challenger record had the same flaw."""
    old = _record(580, "B", 0.0386) | {"challenger": _record(560, "C", 0.0749)}
    decisions = {
        "d1": old,
        "d2": _record(590, "A", 0.03),
        "d3": _record(565, "B", 0.06),
    }
    outcomes = [Outcome(d, False, "2026-12-01T00:00:00", i) for i, d in enumerate(decisions, 2)]
    report = assemble(decisions, outcomes, matured_before="2026-01-01")
    assert report["bands_recut_from_score"] == 2
    champion, challenger = report["versions"]
    assert {c["band"]: c["n"] for c in champion["calibration"]} == {"A": 2, "B": 1}
    assert {c["band"]: c["n"] for c in challenger["calibration"]} == {"B": 1}
    assert "2 logged records carried a risk band that contradicts their score" in markdown(report)


def test_consistent_logs_say_nothing_about_recutting() -> None:
    decisions = {"d1": _record(580, "A", 0.0386)}
    report = assemble(decisions, [Outcome("d1", True, "2026-12-01", 2)], "2026-01-01")
    assert report["bands_recut_from_score"] == 0
    assert "contradicts" not in markdown(report)
