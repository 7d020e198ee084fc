"""`credit-risk train --flow` as a user runs it: offline, and without the pipeline extra.

Each case runs the real command in a subprocess whose interpreter loads a guard first (a
`sitecustomize` on PYTHONPATH, so Prefect's server subprocess loads it too): it refuses and
records any connection or name lookup beyond this machine, or refuses to import the modules
named in GUARD_BLOCK_MODULES.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from credit_risk.cli import EXIT_BAD_INPUT, EXIT_GATE_FAILED, PIPELINE_MISSING
from tests.conftest import ROOT

GUARD = """
import importlib.abc, os, socket, sys

_LOG = os.environ.get("GUARD_LOG")
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


def _record(what):
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {what}\\n")


def _local(host):
    return host is None or str(host).startswith(_LOCAL)


_connect, _connect_ex, _getaddrinfo = (
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
)


def connect(self, address):
    if isinstance(address, tuple) and not _local(address[0]):
        _record(f"connect {address!r}")
        raise OSError("no network in this test")
    return _connect(self, address)


def connect_ex(self, address):
    if isinstance(address, tuple) and not _local(address[0]):
        _record(f"connect_ex {address!r}")
        return 101
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror("no network in this test")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
    connect, connect_ex, getaddrinfo
)

_BLOCKED = set(filter(None, os.environ.get("GUARD_BLOCK_MODULES", "").split(",")))


class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Missing())
"""

DEAD_PROXY = "http://127.0.0.1:9"
"""Discard port: anything that honours the proxy variables fails to get out."""


def _guarded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "BENTOML_"))
    }
    env |= {
        "PYTHONPATH": f"{guard_dir}{os.pathsep}{ROOT}",
        "GUARD_LOG": str(tmp_path / "network.log"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "HTTP_PROXY": DEAD_PROXY,
        "HTTPS_PROXY": DEAD_PROXY,
        "ALL_PROXY": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


def test_the_guard_refuses_and_records_an_outside_connection(tmp_path: Path) -> None:
    probe = "import socket; socket.socket().connect(('192.0.2.1', 80))"
    result = _run([sys.executable, "-c", probe], _guarded_env(tmp_path), tmp_path)
    assert result.returncode != 0
    assert "connect ('192.0.2.1', 80)" in (tmp_path / "network.log").read_text()


@pytest.mark.integration
def test_flow_runs_offline_with_embedded_servers(tmp_path: Path) -> None:
    """No Prefect or MLflow server, no network: temporary server, SQLite in the working dir."""
    command = [str(Path(sys.executable).parent / "credit-risk"), "train", "--flow", "--quick"]
    command += ["--model", "logreg", "--report-dir", str(tmp_path / "reports")]
    result = _run(command, _guarded_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in result.stdout
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()
    assert "Starting temporary server on http://127.0.0.1" in result.stderr
    for gate in ("auc_floor", "champion", "brier", "calibration", "stability", "fairness"):
        assert f"    {gate} " in result.stdout


def test_flow_without_the_pipeline_extra_says_how_to_install(tmp_path: Path) -> None:
    env = _guarded_env(tmp_path, GUARD_BLOCK_MODULES="prefect,mlflow")
    command = [str(Path(sys.executable).parent / "credit-risk"), "train", "--flow", "--quick"]
    result = _run(command, env, tmp_path)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [f"Error: {PIPELINE_MISSING}"]
    assert "pip install 'credit-risk-bento[pipeline]'" in PIPELINE_MISSING
    assert result.stdout == ""


def test_plain_training_needs_neither_prefect_nor_mlflow(tmp_path: Path) -> None:
    env = _guarded_env(tmp_path, GUARD_BLOCK_MODULES="prefect,mlflow")
    probe = "import prefect"
    blocked = _run([sys.executable, "-c", probe], env, tmp_path)
    assert "No module named 'prefect'" in blocked.stderr
    command = [sys.executable, str(ROOT / "train.py"), "--quick"]
    result = _run([*command, "--report-dir", str(tmp_path / "reports")], env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saved: credit_risk:" in result.stderr
    assert (tmp_path / "reports" / "training.json").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_a_failing_gate_ends_the_flow_in_one_line(tmp_path: Path, quiet: bool) -> None:
    """Prefect logs the failure with its traceback: the run's log keeps it, not the terminal."""
    reports = tmp_path / "reports"
    command = [str(Path(sys.executable).parent / "credit-risk"), "train", "--flow", "--quick"]
    command += ["--model", "logreg", "--auc-floor", "0.99", "--report-dir", str(reports)]
    result = _run([*command, *(["--quiet"] if quiet else [])], _guarded_env(tmp_path), tmp_path)
    assert result.returncode == EXIT_GATE_FAILED, result.stderr[-3000:]
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = r"Error: nothing saved: gate auc_floor failed: protocol ROC AUC 0\.\d{4} "
    assert re.fullmatch(
        expected + rf"\(at least 0\.99\) \(log: {re.escape(str(reports))}/training\.log\)",
        lines[-1],
    )
    assert "Traceback" not in result.stderr
    if quiet:
        assert len(lines) == 1
    else:
        assert any("gate auc_floor failed" in x for x in lines[:-1])
        assert "Stopping temporary server" not in result.stderr
    log = (reports / "training.log").read_text()
    assert "Traceback" in log
    assert "GateFailedError: gate auc_floor failed" in log
    assert not (tmp_path / "bentoml" / "models" / "credit_risk").exists()
