"""Failing parts, against the real server: the runner killed under load, unservable models.

What BentoML 1.4.39 does, measured here (docs/reliability.md, "Faults", has the figures):
the runner listens on a Unix socket that the supervisor (circus) holds, so a SIGKILLed runner
leaves requests waiting in that socket's backlog rather than refused; the supervisor notices the
dead worker on its next check (every 10 s, fixed by BentoML) and starts a new one, which loads the
model and serves again. `/readyz` asks the runner on every call (`runner_probe.period` is read
only by the legacy service API), so it stops answering 200 as soon as the runner is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import yaml

from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import MODEL_FILE, SCORECARD_FILE, load_serving_model
from credit_risk.policy import ScoreScaling
from credit_risk.schema import Applicant, Decision
from load_tests.applicants import sample_applicants
from tests.conftest import Server, copy_model, start_server, stop_server, wait_ready

pytestmark = pytest.mark.integration

TARGET = "service:CreditRiskService"
REFUSAL_BOUND_S = 120.0
"""Longest wait for a server to refuse a bad model: the refusal itself takes ~5 s (imports)."""
RECOVERY_BOUND_S = 90.0
"""Longest wait for the restarted runner to answer: the supervisor's 10 s check plus a cold
worker start (~5-15 s on 2 busy cores), with room for a slow CI machine. A liveness bound, not a
performance target: the measured figure is in docs/reliability.md."""
LOAD_CLIENTS = 8
"""Concurrent /classify callers while the runner is killed: a steady load, not an overload."""
KILL_AFTER_S = 3.0
"""Load runs this long before the kill, so requests are in flight at the runner when it dies."""
AFTER_RECOVERY_S = 3.0
"""Load keeps running this long once the service answers again."""
PROBE_EVERY_S = 0.25
PROBE_TIMEOUT_S = 2.0
"""Readiness probe timeout, as the Deployment's readinessProbe (deploy/k8s/base)."""
CLIENT_TIMEOUT_S = 30.0
"""Longer than the service's 10 s request timeout: the server, not the client, ends a request."""
SAME_PROBABILITY = 1e-12


# --- the server's processes ------------------------------------------------------------------


def runner_process(server: Server) -> psutil.Process | None:
    """The live `credit_scorer` worker of a server, found by its command line."""
    try:
        children = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            argv = child.cmdline()
            named = argv[argv.index("--service-name") + 1] if "--service-name" in argv else ""
            if named == "credit_scorer" and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except (psutil.NoSuchProcess, psutil.ZombieProcess, IndexError):
            continue
    return None


# --- models that cannot be served ------------------------------------------------------------


def garble(model_dir: Path) -> None:
    """Damage the model as a broken copy or a full disk would: both files cut short."""
    for name in (SCORECARD_FILE, MODEL_FILE):
        path = model_dir / name
        path.write_bytes(path.read_bytes()[:100])


def mismatch_features(model_dir: Path) -> None:
    """Make the stored model claim a feature list the applicant schema does not have."""
    info_path = model_dir / "model.yaml"
    info = yaml.safe_load(info_path.read_text())
    features = info["metadata"]["features"]
    info["metadata"]["features"] = [*features[:-1], "foreign_worker"]
    info_path.write_text(yaml.safe_dump(info, sort_keys=False))


@dataclass(frozen=True)
class BadStart:
    """A way of starting without a servable model, and what the one log line must say."""

    name: str
    must_say: tuple[str, ...]


BAD_STARTS = (
    BadStart("no-model-in-store", ("'credit_risk:latest' not found", "make train")),
    BadStart("unknown-tag", ("'credit_risk:doesnotexist' not found", "make train")),
    BadStart("malformed-tag", ("model tag 'Not A Tag!' is not valid", "make train")),
    BadStart("corrupted-model", ("cannot use", SCORECARD_FILE, "make train")),
    BadStart("features-mismatch", ("does not match the applicant schema", "make train")),
    BadStart("invalid-setting", ("invalid setting: CREDIT_RISK_MAX_IN_FLIGHT='0'",)),
)


def _bad_start_env(case: str, model_tag: str, home: Path) -> dict[str, str]:
    env = {"BENTOML_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    if case == "unknown-tag":
        env["CREDIT_RISK_MODEL"] = "credit_risk:doesnotexist"
    elif case == "malformed-tag":
        env["CREDIT_RISK_MODEL"] = "Not A Tag!"
    elif case == "corrupted-model":
        garble(copy_model(model_tag, home))
    elif case == "features-mismatch":
        mismatch_features(copy_model(model_tag, home))
    elif case == "invalid-setting":
        copy_model(model_tag, home)
        env["CREDIT_RISK_MAX_IN_FLIGHT"] = "0"
    return env


@pytest.mark.parametrize("bad", BAD_STARTS, ids=[b.name for b in BAD_STARTS])
def test_an_unservable_model_is_refused_with_one_clear_line(
    bad: BadStart, model_tag: str, tmp_path: Path
) -> None:
    env = _bad_start_env(bad.name, model_tag, tmp_path / "home")
    server = start_server(TARGET, tmp_path / "server.log", env=env, wait=False)
    ready = []
    try:
        deadline = time.monotonic() + REFUSAL_BOUND_S
        while server.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                ready.append(httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200)
            time.sleep(0.25)
        code = server.process.poll()
    finally:
        stop_server(server)
    log = server.log()
    assert code is not None, f"still running after {REFUSAL_BOUND_S} s:\n{log[-3000:]}"
    assert code != 0, log
    assert not any(ready), "the server reported ready"
    lines = [ln for ln in log.splitlines() if all(s in ln for s in bad.must_say)]
    assert len(lines) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    if bad.name in {"no-model-in-store", "unknown-tag", "malformed-tag", "corrupted-model"}:
        assert "CREDIT_RISK_MODEL" in lines[0]
    if bad.name == "features-mismatch":
        assert "foreign_worker" in lines[0]


@pytest.mark.slow
def test_a_runner_restarted_onto_a_damaged_model_stops_the_server(
    model_tag: str, tmp_path: Path
) -> None:
    """A model that breaks while serving: the restarted runner must not loop on it."""
    home = tmp_path / "home"
    model_dir = copy_model(model_tag, home)
    server = start_server(TARGET, tmp_path / "server.log", env={"BENTOML_HOME": str(home)})
    try:
        runner = runner_process(server)
        assert runner is not None
        garble(model_dir)
        runner.send_signal(signal.SIGKILL)
        try:
            server.process.wait(timeout=RECOVERY_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still up {RECOVERY_BOUND_S} s later:\n{server.log()[-3000:]}")
    finally:
        stop_server(server)
    log = server.log()
    errors = [ln for ln in log.splitlines() if "[ERROR]" in ln]
    assert len(errors) == 1, log[-3000:]
    assert "cannot serve: model" in errors[0]
    assert "make train" in errors[0]
    assert "Traceback" not in log


# --- the runner killed under load ------------------------------------------------------------


@dataclass
class Outcome:
    """One /classify call during the kill run."""

    sent: float
    done: float
    applicant: int
    status: int | str  # the HTTP status, or the name of the client-side error
    body: Any = None


@dataclass
class KillRun:
    """Everything observed while the runner was killed under load (times from the load start)."""

    killed_at: float
    restarted_at: float | None
    outcomes: list[Outcome] = field(default_factory=list)
    probes: list[tuple[float, int | str]] = field(default_factory=list)
    applicants: list[dict[str, Any]] = field(default_factory=list)
    old_pid: int = 0
    new_pid: int | None = None

    def recovered_at(self) -> float | None:
        """When the first /classify sent after the kill came back 200."""
        done = [o.done for o in self.outcomes if o.sent > self.killed_at and o.status == 200]
        return min(done) if done else None


async def _drive(server: Server, applicants: list[dict[str, Any]]) -> KillRun:
    t0 = time.monotonic()
    run = KillRun(killed_at=float("inf"), restarted_at=None, applicants=applicants)
    hard_stop = t0 + KILL_AFTER_S + RECOVERY_BOUND_S
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=LOAD_CLIENTS + 2)

    def now() -> float:
        return time.monotonic() - t0

    async def caller(client: httpx.AsyncClient, first: int) -> None:
        i = first
        while not stop.is_set() and time.monotonic() < hard_stop:
            k = i % len(applicants)
            sent = now()
            try:
                r = await client.post("/classify", json=applicants[k])
                status: int | str = r.status_code
                body = r.json() if r.headers.get("content-type") == "application/json" else r.text
            except httpx.HTTPError as exc:
                status, body = type(exc).__name__, str(exc)
            run.outcomes.append(Outcome(sent, now(), k, status, body))
            i += LOAD_CLIENTS

    async def prober(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and time.monotonic() < hard_stop:
            sent = now()
            try:
                r = await client.get("/readyz", timeout=PROBE_TIMEOUT_S)
                status: int | str = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            run.probes.append((sent, status))
            await asyncio.sleep(PROBE_EVERY_S)

    async def killer() -> None:
        await asyncio.sleep(KILL_AFTER_S)
        old = runner_process(server)
        assert old is not None, "no runner to kill"
        run.old_pid = old.pid
        old.send_signal(signal.SIGKILL)
        run.killed_at = now()
        while time.monotonic() < hard_stop:
            await asyncio.sleep(0.1)
            new = runner_process(server)
            if new is not None and new.pid != run.old_pid:
                run.new_pid, run.restarted_at = new.pid, now()
                break
        while time.monotonic() < hard_stop:
            back = run.recovered_at()
            if back is not None and now() > back + AFTER_RECOVERY_S:
                break
            await asyncio.sleep(0.1)
        stop.set()

    async with (
        httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S, limits=limits) as load,
        httpx.AsyncClient(base_url=server.url) as probes,
    ):
        await asyncio.gather(
            *(caller(load, i) for i in range(LOAD_CLIENTS)), prober(probes), killer()
        )
    return run


@pytest.fixture(scope="module")
def kill_run(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    """Kill the runner once, under load, and keep what every caller and probe saw."""
    workdir = tmp_path_factory.mktemp("runner-kill")
    server = start_server(TARGET, workdir / "server.log", env={"CREDIT_RISK_MODEL": model_tag})
    try:
        applicants = sample_applicants(200, seed=7)
        run = asyncio.run(_drive(server, applicants))
        wait_ready(server.url, server.process, RECOVERY_BOUND_S)  # fails if it never came back
        print("runner kill:", json.dumps(summarise(run)))
    finally:
        stop_server(server)
    return run


def summarise(run: KillRun) -> dict[str, Any]:
    """The figures docs/reliability.md quotes."""
    statuses: dict[str, int] = {}
    for o in run.outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    back = run.recovered_at()
    ready_again = [t for t, s in run.probes if t > run.killed_at and s == 200]
    return {
        "requests": statuses,
        "respawned_after_s": None
        if run.restarted_at is None
        else round(run.restarted_at - run.killed_at, 2),
        "classify_200_again_after_s": None if back is None else round(back - run.killed_at, 2),
        "ready_again_after_s": round(min(ready_again) - run.killed_at, 2) if ready_again else None,
        "slowest_after_kill_s": round(
            max((o.done - o.sent for o in run.outcomes if o.done > run.killed_at), default=0), 2
        ),
    }


def expected_decisions(model_tag: str, applicants: list[dict[str, Any]]) -> list[Decision]:
    """What the model decides for each applicant, computed in this process."""
    served = load_serving_model(model_tag)
    meta = served.metadata
    policy = DecisionRule(
        threshold=float(meta["threshold"]),
        scaling=ScoreScaling.from_metadata(meta["score_scaling"]),
        model_version=served.tag,
    )
    codes = encode_applicants([Applicant.model_validate(a) for a in applicants])
    proba, excess = served.scorer.predict(codes)
    return policy.decide(np.asarray(proba), np.asarray(excess))


@pytest.mark.slow
def test_supervisor_restarts_the_killed_runner(kill_run: KillRun) -> None:
    assert kill_run.new_pid is not None, "BentoML did not start a new runner"
    assert kill_run.new_pid != kill_run.old_pid
    assert kill_run.recovered_at() is not None, "/classify never answered 200 after the kill"


@pytest.mark.slow
def test_readyz_is_not_ready_while_the_runner_is_down(kill_run: KillRun) -> None:
    assert kill_run.restarted_at is not None
    before = [s for t, s in kill_run.probes if t < kill_run.killed_at]
    assert 200 in before, before
    # probes whose whole wait fell inside the outage: one sent just before the new runner came
    # up may be answered by it
    down = [
        s
        for t, s in kill_run.probes
        if kill_run.killed_at < t and t + PROBE_TIMEOUT_S < kill_run.restarted_at
    ]
    assert down, "no probe while the runner was down"
    assert all(s != 200 for s in down), down
    after = [s for t, s in kill_run.probes if t > (kill_run.recovered_at() or float("inf"))]
    assert 200 in after, "ready again once the runner answers"


@pytest.mark.slow
def test_every_answer_is_the_models_decision(kill_run: KillRun, model_tag: str) -> None:
    expected = expected_decisions(model_tag, kill_run.applicants)
    served = [o for o in kill_run.outcomes if o.status == 200]
    assert served, "nothing was answered"
    for o in served:
        got, want = Decision.model_validate(o.body), expected[o.applicant]
        assert abs(got.probability_of_default - want.probability_of_default) <= SAME_PROBABILITY
        assert (got.decision, got.score, got.risk_band, got.model_version) == (
            want.decision,
            want.score,
            want.risk_band,
            want.model_version,
        )
        assert [r.code for r in got.reason_codes] == [r.code for r in want.reason_codes]


@pytest.mark.slow
def test_requests_caught_by_the_outage_fail_with_a_clear_503(kill_run: KillRun) -> None:
    # The outage lasts longer than a runner call may wait (the supervisor's check alone can
    # take 10 s), so requests that meet it are refused promptly rather than held.
    failed = [o for o in kill_run.outcomes if o.status != 200]
    assert failed, "every request waited for the new runner instead of being refused"
    for o in failed:
        assert o.status == 503, (o.status, o.body)
        assert isinstance(o.body, dict)
        assert "runner" in str(o.body.get("error", "")), o.body


def test_runner_process_is_found_by_its_command_line(server: Server) -> None:
    runner = runner_process(server)
    assert runner is not None
    assert "credit_scorer" in runner.cmdline()
    assert runner.pid != server.process.pid
    assert runner.ppid() == server.process.pid  # started by the supervisor itself
