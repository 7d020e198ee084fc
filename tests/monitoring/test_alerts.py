"""The alert rules: Prometheus's own promtool checks them and runs their unit tests on synthetic
series (tests/monitoring/alerts_test.yaml, alerts_daily_test.yaml); every alert is tested firing
and staying silent, and those tests fail when the rules are made to always or never fire."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from credit_risk.monitoring.alerts import alerts, prometheus_rule, rule_groups
from credit_risk.monitoring.files import RULES_FILE
from tests.conftest import ROOT

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (Debian: apt-get install prometheus; .ci/run installs it)",
)
RULES = ROOT / "deploy" / "monitoring" / RULES_FILE
UNIT_TESTS = [Path(__file__).with_name(f) for f in ("alerts_test.yaml", "alerts_daily_test.yaml")]
OPERATIONS = ROOT / "docs" / "operations.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, timeout=120
    )


def _cases() -> list[tuple[str, str, bool]]:
    """(test name, alert name, expects an alert) for every evaluation in the unit tests."""
    return [
        (test["name"], case["alertname"], bool(case.get("exp_alerts")))
        for path in UNIT_TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    out = _promtool("check", "rules", str(RULES))
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    out = _promtool("test", "rules", *map(str, UNIT_TESTS))
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = _cases()
    for alert in alerts():
        outcomes = {fires for _, name, fires in cases if name == alert.name}
        assert outcomes == {True, False}, f"{alert.name}: tested {outcomes or 'never'}"
    unknown = {name for _, name, _ in cases} - {a.name for a in alerts()}
    assert not unknown, f"unit tests of alerts that do not exist: {unknown}"


def _mutant_failures(tmp_path: Path, expr: str) -> list[tuple[str, str]]:
    """Run the unit tests against the rules with every alert's expression replaced by `expr`
    (and no `for`); the (test name, alert) pairs promtool reports failing."""
    groups = rule_groups()
    for rule in groups["groups"][0]["rules"]:
        rule["expr"] = expr
        rule.pop("for", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(groups), encoding="utf-8")
    suites = []
    for path in UNIT_TESTS:
        suite = yaml.safe_load(path.read_text(encoding="utf-8"))
        suite["rule_files"] = [str(rules)]
        suites.append(tmp_path / path.name)
        suites[-1].write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    out = _promtool("test", "rules", *map(str, suites))
    assert out.returncode != 0
    return re.findall(r"name: (.+?),\s+alertname: (\w+),", out.stdout + out.stderr)


@needs_promtool
def test_the_unit_tests_catch_rules_that_always_or_never_fire(tmp_path: Path) -> None:
    """Guards the guard: each silent case fails if its alert fires at once, each firing case
    fails if its alert never fires."""
    always = set(_mutant_failures(tmp_path, "vector(1)"))
    never = set(_mutant_failures(tmp_path, "vector(1) < 0"))
    for test, name, fires in _cases():
        assert (test, name) in (never if fires else always), f"{test} / {name} has no teeth"


def test_each_alert_says_what_and_where_to_look() -> None:
    anchors = _anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in rule_groups()["groups"][0]["rules"]:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        notes: dict[str, Any] = rule["annotations"]
        assert notes["summary"], rule["alert"]
        assert notes["description"], rule["alert"]
        page, _, anchor = notes["runbook_url"].partition("#")
        assert (ROOT / page).resolve() == OPERATIONS.resolve()
        assert anchor in anchors, f"{rule['alert']}: no runbook section in docs/operations.md"


def _anchors(markdown: str) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_prometheus_rule_carries_the_plain_rules() -> None:
    assert prometheus_rule()["spec"] == rule_groups()
    committed = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert committed == rule_groups()
