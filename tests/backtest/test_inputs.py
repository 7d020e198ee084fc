"""Bad outcome files: one line naming the line and exit 2 with nothing written, or (ids that
match no logged decision) a complete report listing them and exit 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from credit_risk.backtest import EXIT_UNMATCHED
from credit_risk.cli import main
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import load_serving_model
from credit_risk.policy import ScoreScaling
from credit_risk.schema import Applicant
from load_tests.applicants import sample_applicants
from tests.training.test_flow_cli import _guarded_env

HEADER = "decision_id,outcome,observed_at"


@pytest.fixture
def decision_log(model_tag: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A decision log of real decisions by the test model, in the service's layout."""
    model = load_serving_model(model_tag)
    applicants = sample_applicants(12, seed=3)
    proba, excess = model.scorer.predict(
        encode_applicants([Applicant.model_validate(a) for a in applicants])
    )
    rule = DecisionRule(
        float(model.metadata["threshold"]),
        ScoreScaling.from_metadata(model.metadata["score_scaling"]),
        model.tag,
    )
    records = [
        a | d | {"reason_codes": ",".join(r["code"] for r in d["reason_codes"])}
        for a, d in zip(applicants, rule.records(proba, excess), strict=True)
    ]
    path = tmp_path / "log" / "data.1.log"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path.parent, [r["decision_id"] for r in records]


def run(outcomes: Path, log: Path, report_dir: Path) -> Result:
    args = ["backtest", str(outcomes), "--decision-log", str(log), "--report-dir", str(report_dir)]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-column", "missing column(s) observed_at"),
        ("bad-outcome", "line 3: outcome 'defaulted' is not 'good' or 'bad'"),
        ("duplicate", "line 4: decision_id {0} already given on line 2"),
        ("bad-date", "line 2: observed_at 'last spring' is not an ISO date"),
    ],
)
def test_bad_outcomes_are_refused_with_the_line_and_nothing_written(
    case: str, message: str, decision_log: tuple[Path, list[str]], tmp_path: Path
) -> None:
    log, ids = decision_log
    rows = {
        "missing-column": ["decision_id,outcome", f"{ids[0]},good"],
        "bad-outcome": [HEADER, f"{ids[0]},good,2027-01-31", f"{ids[1]},defaulted,2027-01-31"],
        "duplicate": [HEADER] + [f"{i},bad,2027-01-31" for i in (ids[0], ids[1], ids[0])],
        "bad-date": [HEADER, f"{ids[0]},good,last spring"],
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
    decision_log: tuple[Path, list[str]], tmp_path: Path
) -> None:
    log, ids = decision_log
    rows = [HEADER, f"{ids[0]},good,2027-01-31", "feedfacefeedface,bad,2027-01-31"]
    rows.append(f"{ids[1]},BAD,2027-02-01T09:30:00")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("\n".join(rows) + "\n")
    result = run(outcomes, log, tmp_path / "report")
    assert result.exit_code == EXIT_UNMATCHED, result.output
    report = json.loads((tmp_path / "report" / "backtest.json").read_text())
    assert report["outcomes"]["matched"] == 2
    assert report["outcomes"]["unmatched_ids"] == [{"line": 3, "decision_id": "feedfacefeedface"}]
    assert "line 3: `feedfacefeedface`" in (tmp_path / "report" / "backtest.md").read_text()
    assert (tmp_path / "report" / "backtest.png").read_bytes()[:4] == b"\x89PNG"


def test_parquet_outcomes(decision_log: tuple[Path, list[str]], tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    log, ids = decision_log
    table = pa.table(
        {
            "decision_id": ids[:3],
            "outcome": ["good", "bad", "good"],
            "observed_at": ["2027-01-31"] * 3,
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
