"""Shared fixtures: an isolated model store, a quickly trained real model, a real server.

The BentoML home is redirected before anything resolves it, so no test can touch the user's
own model store; server subprocesses inherit it. That session store holds the quickly trained
model (`credit_risk:latest`) and the challenger, and nothing else writes models there: a test
that saves, promotes or damages models works in a store of its own (`own_store`). Servers are
started, awaited and stopped through `load_tests/harness.py`, as the load tools do.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from bentoml._internal.bento import BentoStore
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore

from credit_risk import environment, model_store
from credit_risk.training.run import train_and_save
from load_tests import harness
from load_tests.harness import Server, free_port

__all__ = ["ROOT", "TEST_HOME", "Server", "free_port", "start_server", "stop_server"]

ROOT = harness.REPO
TEST_HOME = Path(tempfile.mkdtemp(prefix="credit-risk-test-home-"))
# the one change to the environment outside monkeypatch: it must precede BentoML's first look
os.environ["BENTOML_HOME"] = str(TEST_HOME)
environment.prepare()  # as the entry points do: no usage reports from tests either

SERVER_READY_TIMEOUT_S = harness.READY_TIMEOUT_S
stop_server = harness.stop


SESSION_MODELS: list[str] = []
"""The versions the session store should hold: the quick model (`latest`), the challenger."""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test wrote models into the session store, then remove the store (a
    crashed run leaves only a tmp dir behind)."""
    models = TEST_HOME / "models" / model_store.MODEL_NAME
    if SESSION_MODELS:
        stored = sorted(p.name for p in models.iterdir() if p.is_dir())
        latest = (models / "latest").read_text().strip()
        if stored != sorted(SESSION_MODELS) or latest != SESSION_MODELS[0]:
            print(
                f"\na test changed the session store: it holds {stored} with latest {latest}, "
                f"expected {sorted(SESSION_MODELS)} with latest {SESSION_MODELS[0]}"
            )
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(TEST_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def isolated_home() -> Path:
    """The session store this file points BENTOML_HOME at: a temporary directory, where BentoML
    itself resolved its home (whatever store a test puts over it), never the user's."""
    if not TEST_HOME.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
        pytest.fail("BENTOML_HOME must point into a temporary directory before bentoml loads")
    assert Path(BentoMLContainer.bentoml_home._provide()).resolve() == TEST_HOME.resolve()
    return TEST_HOME


@pytest.fixture(scope="session")
def model_tag() -> str:
    """A real model trained quickly into the session store (its `latest`)."""
    with store_at(TEST_HOME):  # the session store, even when first needed under a test's own
        tag = train_and_save(quick=True, report_dir=TEST_HOME / "reports")
    SESSION_MODELS.insert(0, str(tag).split(":")[1])
    return str(tag)


def fresh_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    base: Mapping[str, str] = os.environ,
) -> str:
    """What a new interpreter prints running `code` from the repository (import side effects
    and optional extras can only be seen from a process of their own)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def imported_modules(code: str, env: dict[str, str] | None = None) -> set[str]:
    """Every module a fresh interpreter has loaded after running `code` from the repository."""
    out = fresh_python(f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))", env=env)
    return set(json.loads(out.strip().splitlines()[-1]))


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


def start_server(
    target: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    working_dir: Path | None = ROOT,
    wait: bool = True,
) -> Server:
    """Start `bentoml serve TARGET` on a free port (and by default wait until ready), with a
    BentoML home of its own unless `env` names one."""
    env = dict(env or {})
    if "BENTOML_HOME" not in env:
        env["BENTOML_HOME"] = str(server_home(log_path.with_name(f"{log_path.stem}-home")))
    port = harness.free_port()
    argv = harness.bentoml_serve(target, port, working_dir)
    server = harness.spawn(
        argv, log_path, url=f"http://127.0.0.1:{port}", env=env, cwd=cwd or log_path.parent
    )
    if wait:
        try:
            harness.wait_ready(server, timeout=SERVER_READY_TIMEOUT_S)
        except Exception:
            harness.stop(server)
            print(server.log()[-5000:])
            raise
    return server


REFUSAL_BOUND_S = 120.0
"""Longest wait for a server to refuse a bad start: the refusal itself takes ~5 s (imports)."""


def refused_start(target: str, log_path: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Start a server that should refuse to start: its exit code (None if still running after
    `REFUSAL_BOUND_S`) and its log."""
    server = start_server(target, log_path, env=env, wait=False)
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):  # still running: the caller asserts
            server.process.wait(timeout=REFUSAL_BOUND_S)
        code = server.process.poll()
    finally:
        stop_server(server)
    return code, server.log()


@functools.cache
def service_workers() -> frozenset[tuple[str, str]]:
    """(service name, worker id) of every worker `bentoml serve` starts, from the services'
    own `workers` configuration: what `harness.roles` names once all of them are up."""
    from service import CreditRiskService  # noqa: PLC0415 (imports BentoML's SDK: only when asked)

    return frozenset(
        (name, str(worker))
        for name, svc in CreditRiskService.all_services().items()
        for worker in range(1, int(svc.config.get("workers", 1)) + 1)
    )


@contextmanager
def serving(workdir: Path, model_tag: str, *, tokens: str = "", **env: str) -> Iterator[Server]:
    """The service from the source tree serving `model_tag` (bearer `tokens` on when given,
    comma-separated), its log and home in `workdir`, stopped on exit: every server fixture."""
    env["CREDIT_RISK_MODEL"] = model_tag
    if tokens:
        env["CREDIT_RISK_API_TOKENS"] = tokens
    srv = start_server("service:CreditRiskService", workdir / "server.log", env=env)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def server(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real service from the source tree, serving the quickly trained model."""
    with serving(tmp_path_factory.mktemp("server"), model_tag) as srv:
        yield srv


@contextmanager
def store_at(home: Path, *tags: str) -> Iterator[Path]:
    """This process's BentoML store (and its subprocesses') at `home`, holding copies of the
    session store's `tags` (the first becomes `latest`); the session store again afterwards."""
    for tag in tags:
        copy_model(tag, home)
    for part in ("models", "bentos"):
        (home / part).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", str(home))
        for provider, value in (
            (BentoMLContainer.bentoml_home, str(home)),
            (BentoMLContainer.model_store, ModelStore(home / "models")),
            (BentoMLContainer.bento_store, BentoStore(home / "bentos")),
        ):
            stack.enter_context(provider.patch(value))
        assert model_store.store_home() == home
        yield home


@pytest.fixture
def own_store(model_tag: str, tmp_path: Path) -> Iterator[Path]:
    """A fresh model store for one test, holding a copy of the quickly trained model: what the
    test saves, promotes or breaks there leaves the session store as it was."""
    with store_at(tmp_path / "bentoml", model_tag) as home:
        yield home


@pytest.fixture(scope="session")
def challenger_tag(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second real model (another seed, a linear scorecard) to serve as challenger.

    Trained in a store of its own and copied into the session store, where
    `credit_risk:latest` stays the quickly trained model other tests rely on.
    """
    with store_at(tmp_path_factory.mktemp("challenger-store")) as home:
        tag = str(train_and_save(quick=True, seed=7, model="logreg", report_dir=None, quiet=True))
    copy_model(tag, TEST_HOME, source=home)
    SESSION_MODELS.append(tag.split(":")[1])
    return tag


def copy_model(tag: str, home: Path, version: str | None = None, source: Path = TEST_HOME) -> Path:
    """Copy one stored model from the store at `source` into the store at `home` (as `version`
    if given); returns its directory. The copy does not become `latest` unless it is the
    store's first model."""
    name, stored_version = tag.split(":")
    target = home / "models" / name / (version or stored_version)
    shutil.copytree(source / "models" / name / stored_version, target)
    if version:
        info = target / "model.yaml"
        info.write_text(
            info.read_text().replace(f"version: {stored_version}", f"version: {version}")
        )
    latest = target.parent / "latest"
    if not latest.exists():
        latest.write_text(target.name)
    return target
