"""The committed files in deploy/monitoring are what `credit-risk monitoring` generates, and
its `--check` says when they are not."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from credit_risk.cli import main
from credit_risk.monitoring.files import (
    DASHBOARD_FILE,
    PROMETHEUS_RULE_FILE,
    RULES_FILE,
    render,
    stale,
)
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy" / "monitoring"


def test_the_committed_files_are_current() -> None:
    assert stale(DEPLOY) == [], "run `credit-risk monitoring` and commit deploy/monitoring"


def test_check_names_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["monitoring", "--check", "--out", str(tmp_path)])
    assert missing.exit_code == 1
    assert DASHBOARD_FILE in missing.output

    wrote = runner.invoke(main, ["monitoring", "--out", str(tmp_path)])
    assert wrote.exit_code == 0, wrote.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render())
    assert runner.invoke(main, ["monitoring", "--check", "--out", str(tmp_path)]).exit_code == 0

    rules = tmp_path / RULES_FILE
    rules.write_text(rules.read_text().replace("0.01", "0.02"))
    edited = runner.invoke(main, ["monitoring", "--check", "--out", str(tmp_path)])
    assert edited.exit_code == 1
    assert RULES_FILE in edited.output
    assert DASHBOARD_FILE not in edited.output


def test_runbook_links_can_point_where_the_docs_are_served(tmp_path: Path) -> None:
    base = "/srv/handbook/credit-risk/operations.html"
    result = CliRunner().invoke(
        main, ["monitoring", "--out", str(tmp_path), "--runbook-base", base]
    )
    assert result.exit_code == 0, result.output
    for name in (RULES_FILE, PROMETHEUS_RULE_FILE):
        document = yaml.safe_load((tmp_path / name).read_text())
        groups = document.get("spec", document)["groups"]
        links = [r["annotations"]["runbook_url"] for g in groups for r in g["rules"]]
        assert links
        assert all(link.startswith(base + "#creditrisk") for link in links), links


def test_generated_yaml_keeps_promql_readable() -> None:
    text = render()[RULES_FILE]
    assert "expr: |-\n" in text  # multi-line expressions as literal blocks, not escaped strings
    assert "\\n" not in text
