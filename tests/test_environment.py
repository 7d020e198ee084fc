"""No usage reports: the entry points switch every tool's telemetry off, importing does not."""

from __future__ import annotations

import os

from credit_risk import environment
from tests.conftest import fresh_python

_WITHOUT_TELEMETRY_SWITCHES = {k: v for k, v in os.environ.items() if k not in environment.DEFAULTS}


def test_prepare_keeps_what_the_caller_chose() -> None:
    env = {"DO_NOT_TRACK": "0"}
    environment.prepare(env)
    assert env["DO_NOT_TRACK"] == "0"
    assert env["BENTOML_DO_NOT_TRACK"] == "true"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_importing_the_package_changes_no_environment_variable() -> None:
    code = (
        "import os; before = dict(os.environ)\n"
        "import credit_risk.cli, credit_risk.training.run, credit_risk.model_store, service\n"
        "changed = sorted(k for k in set(before) | set(os.environ) "
        "if before.get(k) != os.environ.get(k))\n"
        "print('CHANGED', changed)"
    )
    out = fresh_python(code, base=_WITHOUT_TELEMETRY_SWITCHES)
    assert "CHANGED []" in out, out


def test_the_command_line_switches_telemetry_off() -> None:
    code = (
        "import os, sys\n"
        "from click.testing import CliRunner\n"
        "from credit_risk.cli import main\n"
        "CliRunner().invoke(main, ['policy'])\n"
        "print('OFF', os.environ.get('BENTOML_DO_NOT_TRACK'), os.environ.get('DO_NOT_TRACK'))"
    )
    out = fresh_python(code, base=_WITHOUT_TELEMETRY_SWITCHES)
    assert "OFF true 1" in out, out
