"""Bad outcome files: one line naming the line and exit 2 with nothing written, or (ids that
match no stored decision) a complete report listing them and exit 3; and the performance window:
decisions younger than it are counted apart, never scored."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from credit_risk.backtest import EXIT_UNMATCHED
from credit_risk.cli import main
from credit_risk.decision_store import new_records, open_store
from credit_risk.decision_store.chain import ChainWriter
from credit_risk.decision_store.records import utc_text
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import load_serving_model
from credit_risk.policy import ScoreScaling
from credit_risk.schema import Applicant
from load_tests.applicants import sample_applicants
from tests.training.test_flow_cli import _guarded_env

HEADER = "decision_id,outcome,observed_at"


DECIDED_AT = datetime(2024, 3, 1, tzinfo=UTC)
"""Old enough for the default 12-month performance window."""


def store_decisions(model_tag: str, url: str, n: int, when: datetime) -> list[str]:
    """`n` real decisions by the test model, stored as the service stores them."""
    model = load_serving_model(model_tag)
    applicants = [Applicant.model_validate(a) for a in sample_applicants(n, seed=3)]
    proba, excess = model.scorer.predict(encode_applicants(applicants))
    rule = DecisionRule(
        float(model.metadata["threshold"]),
        ScoreScaling.from_metadata(model.metadata["score_scaling"]),
        model.tag,
    )
    decisions = rule.records(proba, excess)
    records = new_records(
        applicants,
        decisions,
        None,
        application_ids=[None] * n,
        policy_version=rule.policy_version,
        decided_at=utc_text(when),
    )
    ChainWriter(open_store(url), f"api:test:{when.isoformat()}").append(records)
    return [d["decision_id"] for d in decisions]


@pytest.fixture
def decision_log(model_tag: str, tmp_path: Path) -> tuple[str, list[str]]:
    """A decision store holding 12 real decisions by the test model, old enough to count."""
    url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    return url, store_decisions(model_tag, url, 12, DECIDED_AT)


def run(outcomes: Path | None, store_url: str, report_dir: Path, *extra: str) -> Result:
    args = ["backtest", *([str(outcomes)] if outcomes else [])]
    args += ["--store", store_url, "--report-dir", str(report_dir), *extra]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-column", "missing column(s) observed_at"),
        ("bad-outcome", "line 3: outcome 'defaulted' is not 'good' or 'bad'"),
        ("duplicate", "line 4: decision_id {0} already given on line 2"),
        ("bad-date", "line 2: observed_at 'last spring' is not an ISO date"),
        ("before-decision", "line 2: outcome observed at 2023-12-31, before its decision {0}"),
    ],
)
def test_bad_outcomes_are_refused_with_the_line_and_nothing_written(
    case: str, message: str, decision_log: tuple[str, list[str]], tmp_path: Path
) -> None:
    log, ids = decision_log
    rows = {
        "missing-column": ["decision_id,outcome", f"{ids[0]},good"],
        "bad-outcome": [HEADER, f"{ids[0]},good,2025-01-31", f"{ids[1]},defaulted,2025-01-31"],
        "duplicate": [HEADER] + [f"{i},bad,2025-01-31" for i in (ids[0], ids[1], ids[0])],
        "bad-date": [HEADER, f"{ids[0]},good,last spring"],
        "before-decision": [HEADER, f"{ids[0]},good,2023-12-31"],
    }[case]
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("\n".join(rows) + "\n")
    report_dir = tmp_path / "report"
    result = run(outcomes, log, report_dir)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert message.format(*ids) in result.output
    assert not report_dir.exists() or not any(report_dir.iterdir())


def test_unknown_ids_are_counted_and_listed(
    decision_log: tuple[str, list[str]], tmp_path: Path
) -> None:
    log, ids = decision_log
    rows = [HEADER, f"{ids[0]},good,2025-01-31", "feedfacefeedface,bad,2025-01-31"]
    rows.append(f"{ids[1]},BAD,2025-02-01T09:30:00")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("\n".join(rows) + "\n")
    result = run(outcomes, log, tmp_path / "report")
    assert result.exit_code == EXIT_UNMATCHED, result.output
    report = json.loads((tmp_path / "report" / "backtest.json").read_text())
    assert report["outcomes"]["matched"] == 2
    assert report["outcomes"]["unmatched_ids"] == [{"line": 3, "decision_id": "feedfacefeedface"}]
    assert "line 3: `feedfacefeedface`" in (tmp_path / "report" / "backtest.md").read_text()
    assert (tmp_path / "report" / "backtest.png").read_bytes()[:4] == b"\x89PNG"


def test_parquet_outcomes(decision_log: tuple[str, list[str]], tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    log, ids = decision_log
    table = pa.table(
        {
            "decision_id": ids[:3],
            "outcome": ["good", "bad", "good"],
            "observed_at": ["2025-01-31"] * 3,
        }
    )
    pq.write_table(table, tmp_path / "outcomes.parquet")
    result = run(tmp_path / "outcomes.parquet", log, tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "backtest.json").read_text())
    assert report["outcomes"]["matched"] == 3
    (champion,) = report["versions"]
    assert champion["matured"] == 3
    assert champion["matured_bad"] == 1


def test_backtest_without_the_training_extra_says_how_to_install_it(tmp_path: Path) -> None:
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("decision_id,outcome,observed_at\n")
    env = _guarded_env(tmp_path, GUARD_BLOCK_MODULES="scipy")
    command = [str(Path(sys.executable).parent / "credit-risk"), "backtest", str(outcomes)]
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: back-testing needs scipy: pip install 'credit-risk-bento[training]' (or make setup)"
    ]


def test_outcomes_loaded_into_the_store_and_the_performance_window(
    model_tag: str, decision_log: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, old = decision_log
    young = store_decisions(model_tag, url, 6, datetime.now(UTC) - timedelta(days=90))
    outcomes = tmp_path / "outcomes.csv"
    rows = [HEADER] + [
        f"{i},{'bad' if k % 3 == 0 else 'good'},2025-06-30" for k, i in enumerate(old)
    ]
    rows += [f"{i},bad,{datetime.now(UTC).date().isoformat()}" for i in young[:2]]
    outcomes.write_text("\n".join(rows) + "\n")
    loaded = CliRunner().invoke(main, ["outcomes", "load", str(outcomes), "--store", url])
    assert loaded.exit_code == 0, loaded.output
    result = run(None, url, tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "backtest.json").read_text())
    window = report["performance_window"]
    assert (window["min_months"], window["younger_decisions"]) == (12, len(young))
    assert window["younger_outcomes_left_out"] == 2
    (champion,) = report["versions"]
    assert champion["decisions"] == len(old) + len(young)
    assert champion["matured"] == len(old), "the young decisions' outcomes are left out"
    assert champion["matured_bad"] == sum(k % 3 == 0 for k in range(len(old)))
    assert "too young to count" in (tmp_path / "report" / "backtest.md").read_text()
    everything = run(None, url, tmp_path / "all", "--min-months", "0")
    assert (
        json.loads((tmp_path / "all" / "backtest.json").read_text())["versions"][0]["matured"]
        == len(old) + 2
    )
    assert everything.exit_code == 0
