"""A guarded server for the client's refusal paths, and ways to make it refuse for real.

`guarded` has auth on, one API worker admitting one request at a time, so a second request in
flight is refused with 429; suspending its runner (SIGSTOP) holds an admitted request until the
service's runner deadline answers it 503. Nothing of the service is mocked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from credit_risk.schema import example_applicant
from tests.conftest import Server, serving
from tests.service.test_faults import runner_process

TOKEN = "client-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="package")
def guarded(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Tokens on, one API worker, one request admitted at a time."""
    overrides = {"services": {"credit_risk_service": {"workers": 1}}}
    with serving(
        tmp_path_factory.mktemp("guarded"),
        model_tag,
        tokens=TOKEN,
        CREDIT_RISK_MAX_IN_FLIGHT="1",
        BENTOML_CONFIG_OVERRIDES=json.dumps(overrides),
    ) as srv:
        yield srv


@contextmanager
def runner_suspended(server: Server) -> Iterator[Callable[[], None]]:
    """SIGSTOP the server's runner; yields `resume` (SIGCONT), which the exit also runs."""
    runner = runner_process(server)
    assert runner is not None, "no runner process found"
    runner.suspend()
    resumed = threading.Event()

    def resume() -> None:
        if not resumed.is_set():
            resumed.set()
            runner.resume()

    try:
        yield resume
    finally:
        resume()


@contextmanager
def slot_held(server: Server) -> Iterator[Callable[[], None]]:
    """Keep the guarded worker's one slot taken: requests sent back to back from a thread (with
    the runner suspended each holds it until the runner deadline). Yields `release`."""
    stop = threading.Event()

    def hold() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                http.post("/classify", json=example_applicant())

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        yield stop.set
    finally:
        stop.set()
        holder.join(timeout=60)


def wait_until_busy(server: Server, deadline_s: float = 60.0) -> None:
    """Return once a request to the guarded server is refused with 429 (its slot is taken)."""
    end = time.monotonic() + deadline_s
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        while time.monotonic() < end:
            if http.post("/classify", json=example_applicant()).status_code == 429:
                return
    msg = f"no 429 from {server.url} within {deadline_s} s"
    raise TimeoutError(msg)
