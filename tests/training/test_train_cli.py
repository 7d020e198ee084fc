"""`credit-risk train` / `python train.py` as a user runs them: gated, one line on a failure.

Each run is the real command in a subprocess with a BentoML home of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from credit_risk.cli import EXIT_BAD_INPUT, EXIT_GATE_FAILED
from tests.conftest import ROOT
from tests.training.conftest import weakened_data


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENTOML_", "CREDIT_RISK_"))}
    env |= {"BENTOML_HOME": str(tmp_path / "bentoml"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--quick", "--model", "logreg", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )


def _models(tmp_path: Path) -> list[str]:
    store = tmp_path / "bentoml" / "models" / "credit_risk"
    return sorted(p.name for p in store.iterdir() if p.is_dir()) if store.exists() else []


def test_a_failing_gate_ends_in_one_line_and_saves_nothing(tmp_path: Path) -> None:
    champion = _train(tmp_path, "--report-dir", str(tmp_path / "first"))
    assert champion.returncode == 0, champion.stderr
    assert "gate champion skipped: no model in the store to compare with" in champion.stderr
    assert "champion     skipped" in champion.stdout
    saved = _models(tmp_path)
    assert len(saved) == 1

    weak = str(weakened_data(tmp_path / "weak.csv", "shuffled"))
    reports = tmp_path / "reports"
    quiet = _train(tmp_path, "--data", weak, "--report-dir", str(reports), "--quiet")
    assert quiet.returncode == EXIT_GATE_FAILED
    assert quiet.stdout == ""
    (line,) = quiet.stderr.splitlines()
    assert line.startswith("Error: nothing saved: ")
    assert "gate champion failed: held-out ROC AUC " in line
    assert f"for champion credit_risk:{saved[0]} on 200 rows" in line
    assert "90 % CI [" in line
    assert line.endswith(f"(log: {reports / 'training.log'})")
    log = (reports / "training.log").read_text()
    assert "gate champion failed" in log
    assert "data: 1000 applicants" in log
    assert _models(tmp_path) == saved
    assert sorted(p.name for p in reports.iterdir()) == ["training.log"]

    loud = _train(tmp_path, "--data", weak, "--report-dir", str(reports))
    assert loud.returncode == EXIT_GATE_FAILED
    lines = loud.stderr.splitlines()
    assert lines[-1] == line
    assert "Traceback" not in loud.stderr
    assert sum("Error" in x for x in lines) == 1
    assert any(x.startswith("gate champion failed") for x in lines[:-1])
    assert _models(tmp_path) == saved


def test_skip_gates_saves_and_records_the_skip(tmp_path: Path) -> None:
    assert _train(tmp_path, "--report-dir", str(tmp_path / "first"), "-q").returncode == 0
    weak = str(weakened_data(tmp_path / "weak.csv", "shuffled"))
    reports = tmp_path / "reports"
    result = _train(tmp_path, "--data", weak, "--report-dir", str(reports), "--skip-gates")
    assert result.returncode == 0, result.stderr
    assert "quality gates skipped (--skip-gates)" in result.stderr
    assert "quality gates (SKIPPED with --skip-gates" in result.stdout
    assert len(_models(tmp_path)) == 2
    report = json.loads((reports / "training.json").read_text())
    assert report["quality_gates_skipped"] is True
    assert {g["name"]: g["status"] for g in report["gates"]}["champion"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--champion-tolerance", "-1"], "champion_tolerance must be 0 or more, not -1.0"),
        (["--serve-monthly"], "--serve-monthly needs --flow"),
    ],
)
def test_bad_gate_options_are_refused_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _train(tmp_path, *args)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.splitlines() == [f"Error: {message}"]
    assert _models(tmp_path) == []
