"""Shared fixtures: an isolated model store, a quickly trained real model, a real server.

The BentoML home is redirected before anything resolves it, so no test can touch the user's
own model store; server subprocesses inherit it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from credit_risk import environment, model_store
from credit_risk.training.run import train_and_save

ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = Path(tempfile.mkdtemp(prefix="credit-risk-test-home-"))
os.environ["BENTOML_HOME"] = str(TEST_HOME)
environment.prepare()  # as the entry points do: no usage reports from tests either

SERVER_READY_TIMEOUT_S = 180.0
"""Generous for a 2-core CI machine starting two Python worker processes."""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the temporary store (a crashed run leaves only a tmp dir behind)."""
    shutil.rmtree(TEST_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def isolated_home() -> Path:
    """The temporary store this file points BENTOML_HOME at, never the user's."""
    home = os.environ.get("BENTOML_HOME")
    tmp = Path(tempfile.gettempdir()).resolve()
    if not home or not Path(home).resolve().is_relative_to(tmp):
        pytest.fail("BENTOML_HOME must point into a temporary directory before bentoml loads")
    assert model_store.store_home().resolve() == Path(home).resolve()
    return Path(home)


@pytest.fixture(scope="session")
def model_tag() -> str:
    """A real model trained quickly into the isolated store."""
    tag = train_and_save(quick=True, report_dir=TEST_HOME / "reports")
    return str(tag)


def imported_modules(code: str, env: dict[str, str] | None = None) -> set[str]:
    """Every module a fresh interpreter has loaded after running `code` from the repository."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def free_port() -> int:
    """An unused loopback port for a server under test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `bentoml serve` subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    home: Path
    """The server's BENTOML_HOME (its default decision log is under `home / "monitoring"`)."""

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")


def server_home(path: Path) -> Path:
    """A BentoML home of the server's own that shares the test store's models and bentos.

    `bentoml serve` empties `$BENTOML_HOME/prometheus_multiproc_dir` when it starts, which
    would wipe the metrics of any other server running from the same home.
    """
    path.mkdir(parents=True, exist_ok=True)
    for shared in ("models", "bentos"):
        (TEST_HOME / shared).mkdir(parents=True, exist_ok=True)
        link = path / shared
        if not link.exists():
            link.symlink_to(TEST_HOME / shared, target_is_directory=True)
    return path


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll /readyz until 200; fail fast if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"server exited with code {process.returncode} before becoming ready"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    msg = f"server not ready after {timeout} s"
    raise TimeoutError(msg)


def start_server(
    target: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    working_dir: Path | None = ROOT,
    wait: bool = True,
) -> Server:
    """Start `bentoml serve TARGET` on a free port (and by default wait until ready)."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if "BENTOML_HOME" not in (env or {}):
        full_env["BENTOML_HOME"] = str(server_home(log_path.with_name(f"{log_path.stem}-home")))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target]
            + ["--host", "127.0.0.1", "--port", str(port)]
            + (["--working-dir", str(working_dir)] if working_dir else []),
            cwd=cwd or log_path.parent,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        url=f"http://127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        home=Path(full_env["BENTOML_HOME"]),
    )
    if wait:
        try:
            wait_ready(server.url, process, SERVER_READY_TIMEOUT_S)
        except Exception:
            stop_server(server)
            print(server.log()[-5000:])
            raise
    return server


def stop_server(server: Server) -> None:
    """Stop the whole process group (API and runner workers)."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, 15)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, 9)
            server.process.wait()


@pytest.fixture(scope="session")
def server(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real service from the source tree, serving the quickly trained model."""
    workdir = tmp_path_factory.mktemp("server")
    srv = start_server(
        "service:CreditRiskService",
        workdir / "server.log",
        env={"CREDIT_RISK_MODEL": model_tag},
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def challenger_tag(model_tag: str) -> str:
    """A second real model (another seed, a linear scorecard) to serve as challenger.

    `credit_risk:latest` keeps pointing at `model_tag`, which other tests rely on.
    """
    tag = train_and_save(quick=True, seed=7, model="logreg", report_dir=None, quiet=True)
    latest = TEST_HOME / "models" / model_store.MODEL_NAME / "latest"
    latest.write_text(model_tag.split(":")[1])
    return str(tag)


def copy_model(tag: str, home: Path, version: str | None = None) -> Path:
    """Copy one stored model into the store at `home` (as `version` if given); returns its
    directory. The copy does not become `latest` unless it is the store's first model."""
    name, stored_version = tag.split(":")
    source = TEST_HOME / "models" / name / stored_version
    target = home / "models" / name / (version or stored_version)
    shutil.copytree(source, target)
    if version:
        info = target / "model.yaml"
        info.write_text(
            info.read_text().replace(f"version: {stored_version}", f"version: {version}")
        )
    latest = target.parent / "latest"
    if not latest.exists():
        latest.write_text(target.name)
    return target
