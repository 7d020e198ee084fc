"""From serving to back-test: two real models served as champion and challenger (from the
promotion state), the held-out applicants sent through /classify and /classify_batch, outcomes
written from the data set's labels for the applicants the champion approved, the back-test run,
and its figures checked against an independent computation here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

from credit_risk.cli import main
from credit_risk.policy import COSTS
from credit_risk.promotion import STATE_FILE
from credit_risk.training import DEFAULT_SEED
from credit_risk.training.data import applicant_records, load_dataset
from credit_risk.training.run import TEST_FRACTION
from tests.conftest import copy_model, start_server, stop_server
from tests.service.test_champion_challenger import decision_records, expected_decisions

pytestmark = pytest.mark.integration


def held_out() -> tuple[list[dict[str, Any]], np.ndarray]:
    """The held-out split training used (same seed, same stratification) as API bodies."""
    data = load_dataset()
    index = np.arange(len(data.y))
    _, test_index = train_test_split(
        index, test_size=TEST_FRACTION, stratify=data.y, random_state=DEFAULT_SEED
    )
    return applicant_records(data.X.iloc[test_index]), data.y[test_index]


def independent(
    p: np.ndarray, approved: np.ndarray, bad: np.ndarray, matured: np.ndarray
) -> dict[str, float]:
    """The figures as the report defines them, computed with scikit-learn and numpy."""
    fpr, tpr, _ = roc_curve(bad[matured], p[matured])
    auc = roc_auc_score(bad[matured], p[matured])
    cost = np.where(approved, COSTS.bad_approved * p, COSTS.good_declined * (1 - p))
    realised = np.where(
        approved & bad, COSTS.bad_approved, np.where(~approved & ~bad, COSTS.good_declined, 0.0)
    )
    return {
        "approval_rate": approved.mean(),
        "bad_rate_among_approved": bad[matured & approved].mean(),
        "expected_cost_per_decision": cost.mean(),
        "realised_cost_per_matured": realised[matured].mean(),
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": float(np.max(tpr - fpr)),
    }


def test_backtest_of_champion_and_challenger(
    model_tag: str, challenger_tag: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    for tag in (model_tag, challenger_tag):
        copy_model(tag, home)
    state = {"champion": model_tag, "challenger": challenger_tag}
    (home / STATE_FILE).write_text(json.dumps(state | {"previous_champions": [], "audit": []}))
    applicants, labels = held_out()
    half = len(applicants) // 2
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_API_TOKENS": ""}
    server = start_server("service:CreditRiskService", tmp_path / "server.log", env=env)
    try:
        answers = [httpx.post(f"{server.url}/classify", json=a).json() for a in applicants[:half]]
        batch = httpx.post(f"{server.url}/classify_batch", json=applicants[half:], timeout=60)
        answers += batch.json()
        decision_records(home, len(applicants))
    finally:
        stop_server(server)
    assert {a["model_version"] for a in answers} == {model_tag}

    approved = np.array([a["decision"] == "approve" for a in answers])
    bad = labels.astype(bool)
    rows = ["decision_id,outcome,observed_at"] + [
        f"{a['decision_id']},{'bad' if y else 'good'},2027-11-30"
        for a, y, ok in zip(answers, bad, approved, strict=True)
        if ok
    ]
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("\n".join(rows) + "\n")
    report_dir = tmp_path / "report"
    store = f"sqlite:///{home / 'decisions.sqlite'}"  # the server's default decision store
    loaded = CliRunner().invoke(main, ["outcomes", "load", str(outcomes), "--store", store])
    assert loaded.exit_code == 0, loaded.output
    # the decisions were made just now: a performance window of 0 months counts them all
    args = ["backtest", "--store", store, "--min-months", "0", "--report-dir", str(report_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((report_dir / "backtest.json").read_text())
    versions = {v["role"]: v for v in report["versions"]}
    assert versions["champion"]["model_version"] == model_tag
    assert versions["challenger"]["model_version"] == challenger_tag

    champion_p = np.array([a["probability_of_default"] for a in answers])
    shadow = expected_decisions(challenger_tag, applicants)
    challenger_p = np.array([d["probability_of_default"] for d in shadow])
    challenger_approved = np.array([d["decision"] == "approve" for d in shadow])
    for role, p, ok in (
        ("champion", champion_p, approved),
        ("challenger", challenger_p, challenger_approved),
    ):
        got = versions[role]
        want = independent(p, ok, bad, matured=approved)
        for name in ("approval_rate", "bad_rate_among_approved", "expected_cost_per_decision"):
            assert got[name] == pytest.approx(want[name]), (role, name)
        assert got["realised_cost_per_matured"] == pytest.approx(want["realised_cost_per_matured"])
        for name in ("roc_auc", "gini", "ks"):
            assert got["discrimination"][name] == pytest.approx(want[name]), (role, name)
        assert got["matured"] == approved.sum()
        assert sum(c["n"] for c in got["calibration"]) == approved.sum()
        assert sum(c["bad"] for c in got["calibration"]) == bad[approved].sum()

    swaps = versions["challenger"]["swaps"]
    assert swaps["swap_in"] == (challenger_approved & ~approved).sum()
    assert swaps["swap_in_with_outcome"] == 0
    assert swaps["swap_out"] == (approved & ~challenger_approved).sum()
    assert swaps["swap_out_bad"] == (approved & ~challenger_approved & bad).sum()
    markdown = (report_dir / "backtest.md").read_text()
    assert "never booked" in markdown
    assert (report_dir / "backtest.png").stat().st_size > 0
