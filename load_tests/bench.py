"""Side-by-side benchmark: our service with and without batching, the Flask baseline, a ceiling.

    python -m load_tests.bench [--rounds 2] [--duration 10] [--out reports]

Each round starts every configuration in turn (fresh processes, a fresh free port on 127.0.0.1),
times it to ready, checks that its answers are valid and come from the same model, then drives it
with wrk at each concurrency: a short warm-up, then a bounded measured run while the server's
process tree is sampled for CPU time and proportional set size (PSS). Rounds alternate the order
of the configurations so drift and noise show up as spread rather than as a bias. A no-op BentoML
service of the same topology (load_tests/ceiling/) is measured alongside as the ceiling: what
BentoML alone reaches on this machine in this run. The results go
to `<out>/benchmark.json` (every measurement), `benchmark.md` (the table) and `benchmark.png`.

Duration, with the defaults: 2 rounds x 19 runs (ours with batching: 4 concurrencies of
/classify and 3 of /classify_batch; each other configuration: 4 of /classify) x (2 s warm-up +
10 s measured) = 7.6 min of load, plus 8 server starts (about 10 s each to be ready, checked and
at rest) and the idleness probes around each run: about 10 min. `run` prints its own schedule
first (`schedule`), for any settings.

wrk is the load generator because it costs a few microseconds of CPU per request; Locust costs
~0.4-1 ms, which on a 2-core machine would be taken from the server being measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
from pydantic import ValidationError

from credit_risk.schema import Decision
from load_tests.applicants import sample_applicants, write_bodies

REPO: Final = Path(__file__).resolve().parent.parent
WRK_SCRIPT: Final = Path(__file__).resolve().parent / "wrk_bodies.lua"
BIN: Final = Path(sys.executable).parent
WRK_INSTALL_HINT: Final = (
    "wrk is not installed. It is the benchmark's load generator; install it with\n"
    "    sudo apt-get install -y wrk        (Debian/Ubuntu)\n"
    "    brew install wrk                   (macOS)\n"
    "and run `make bench` again. Nothing is installed automatically."
)

BATCH_SIZE: Final = 1000
"""Applicants per /classify_batch request: the API's largest batch (the batch target's load)."""
SINGLE_BODIES: Final = 2000
"""Distinct one-applicant bodies wrk rotates through (twice the data set: no fixed payload)."""
BATCH_BODIES: Final = 12
"""Distinct 1,000-applicant bodies (~0.4 MB each) wrk rotates through."""
CHECK_APPLICANTS: Final = 40
"""Applicants each server must score correctly before it is measured."""
SAME_MODEL_TOLERANCE: Final = 1e-9
"""Largest |p_ours - p_baseline| accepted as 'the same model' (float64 round-off, not maths)."""
READY_TIMEOUT_S: Final = 120.0
"""Give up on a server that is not ready by then (cold imports on a slow disk take ~30 s)."""
STARTUP_FAILED: Final = ("Application startup failed", "Worker failed to boot")
"""Log lines of BentoML and gunicorn when a worker cannot start: stop waiting at once, since
both supervisors keep the parent process alive (and may restart the worker) after them."""
READY_POLL_S: Final = 0.05
"""Readiness polling interval: the resolution of the time-to-ready figure."""
STOP_GRACE_S: Final = 20.0
"""SIGTERM, then this long for a graceful exit, then SIGKILL to the process group."""
PSS_SAMPLE_S: Final = 0.5
"""Interval of memory sampling during a measured run."""
BUSY_PROBE_S: Final = 1.0
"""How long the machine's background load is sampled before each server start."""
WRK_TIMEOUT_S: Final = 5
"""wrk's per-request timeout, shorter than a run so a stuck server shows: a response slower
than this is not a latency but a timeout error (wrk also counts each request still waiting
longer than this at its 2 s checks)."""
IDLE_CORES: Final = 0.2
"""Server CPU below which it counts as idle (an idle BentoML tree uses ~0.02-0.05 cores)."""
DRAIN_PROBE_S: Final = 0.5
"""Window of each idleness probe."""
DRAIN_MAX_S: Final = 30.0
"""Upper bound on waiting for a server to go idle, so every run stays bounded."""
DRAIN_REPORT_S: Final = 2.0
"""Drains longer than this are logged: the previous run overloaded the server."""


@dataclass(frozen=True)
class Load:
    """What a configuration is driven with: an endpoint, a body file, a set of concurrencies."""

    name: str
    path: str
    bodies: str  # "single" or "batch"
    applicants_per_request: int
    concurrency: tuple[int, ...]


@dataclass(frozen=True)
class Server:
    """One configuration: how to start it, how to know it is ready, and the loads it gets."""

    key: str
    label: str
    argv: tuple[str, ...]
    env: dict[str, str]
    ready_path: str
    check_path: str
    loads: tuple[Load, ...]
    is_ours: bool
    scores_model: bool = True
    """False for the no-op ceiling: its constant answers are checked against the schema, but
    kept out of the same-model comparison and the model-version check."""


@dataclass
class Point:
    """One measured run: a server, a load, a concurrency, a round."""

    round: int
    server: str
    load: str
    concurrency: int
    duration_s: float
    requests: int
    requests_per_s: float
    applicants_per_s: float
    p50_ms: float | None  # None when nothing was answered in time
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    errors: dict[str, int]
    server_cpu_cores: float
    server_cpu_ms_per_request: float | None
    generator_cpu_cores: float
    machine_busy_cores: float
    pss_peak_mb: float


@dataclass
class Start:
    """One server start: time to ready, memory at rest, process count, answer checks."""

    round: int
    server: str
    ready_s: float | None
    first_answer_s: float | None
    pss_idle_mb: float | None
    processes: int
    model_version: str | None
    probabilities: list[float] = field(default_factory=list)
    failure: str | None = None
    busy_before_cores: float | None = None


def drain(root: psutil.Process, ready_url: str) -> float:
    """Wait until the server is idle (left-over requests done); returns the seconds waited.

    Idle means both: its CPU use has dropped, and a readiness request sent now is answered (a
    sync worker's accept queue is FIFO, so that answer comes after every queued request).
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < DRAIN_MAX_S:
        before = sum(_cpu_seconds(process_tree(root)).values())
        time.sleep(DRAIN_PROBE_S)
        after = sum(_cpu_seconds(process_tree(root)).values())
        if (after - before) / DRAIN_PROBE_S < IDLE_CORES:
            break
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(ready_url, timeout=max(1.0, DRAIN_MAX_S - (time.perf_counter() - t0)))
    waited = time.perf_counter() - t0
    if waited > DRAIN_REPORT_S:
        _log(f"  (waited {waited:.1f} s for the server to finish left-over requests)")
    return waited


def machine_busy_cores(seconds: float) -> float:
    """CPUs busy with anything at all, averaged over `seconds`: other load skews every figure."""
    t0 = psutil.cpu_times()
    time.sleep(seconds)
    t1 = psutil.cpu_times()
    idle = (t1.idle + getattr(t1, "iowait", 0.0)) - (t0.idle + getattr(t0, "iowait", 0.0))
    return (sum(t1) - sum(t0) - idle) / seconds


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """The server's root process and every descendant (workers, the runner)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process: shared pages split among their users."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_pss_mb(root: psutil.Process) -> float:
    """PSS of the whole server, in MB (10^6 bytes)."""
    return sum(pss_bytes(p.pid) for p in process_tree(root)) / 1e6


def _cpu_seconds(procs: Sequence[psutil.Process]) -> dict[int, float]:
    out: dict[int, float] = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


class TreeSampler:
    """CPU seconds and peak PSS of a process tree across a measured window."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.peak_pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu0: dict[int, float] = {}
        self._machine0 = psutil.cpu_times()
        self._t0 = 0.0
        self.cpu_s = 0.0
        self.machine_busy_s = 0.0
        self.wall_s = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(PSS_SAMPLE_S):
            self.peak_pss_mb = max(self.peak_pss_mb, tree_pss_mb(self.root))

    def __enter__(self) -> TreeSampler:
        self._cpu0 = _cpu_seconds(process_tree(self.root))
        self._machine0 = psutil.cpu_times()
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        cpu1 = _cpu_seconds(process_tree(self.root))
        machine1 = psutil.cpu_times()
        self.wall_s = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_pss_mb = max(self.peak_pss_mb, tree_pss_mb(self.root))
        # a process that appeared during the window counts from zero; one that vanished is lost
        self.cpu_s = sum(t - self._cpu0.get(pid, 0.0) for pid, t in cpu1.items())
        idle0 = self._machine0.idle + getattr(self._machine0, "iowait", 0.0)
        idle1 = machine1.idle + getattr(machine1, "iowait", 0.0)
        total0, total1 = sum(self._machine0), sum(machine1)
        self.machine_busy_s = (total1 - total0) - (idle1 - idle0)


def run_wrk(url: str, bodies: Path, path: str, connections: int, duration_s: int) -> dict[str, Any]:
    """One bounded wrk run on one thread (a second thread would compete with the server)."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",  # wrk takes whole seconds only
        f"--timeout={WRK_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(bodies),
        path,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # once reaped, wrk's CPU time shows in this process's children totals (see `measure`)
    stdout, stderr = proc.communicate(timeout=duration_s + WRK_TIMEOUT_S + 30)
    if proc.returncode != 0:
        msg = f"wrk failed ({proc.returncode}): {stderr.strip() or stdout.strip()}"
        raise RuntimeError(msg)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        msg = f"wrk printed no summary:\n{stdout}\n{stderr}"
        raise RuntimeError(msg)
    summary: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    return summary


def _children_cpu_s() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


Spawned = tuple[psutil.Process, float]
"""A started server's root process and its spawn time (perf_counter)."""


@contextlib.contextmanager
def running(server: Server, port: int, log_path: Path) -> Iterator[Spawned]:
    """Start a server in its own process group; stop the whole group afterwards."""
    argv = [a.format(port=port) for a in server.argv]
    env = {**os.environ, **server.env}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield psutil.Process(proc.pid), started
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it does not leave in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # workers outlive a master that died first: sweep the group once more
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(url: str, root: psutil.Process, started: float, log: Path) -> float:
    """Seconds from spawn to the first 200 on the readiness endpoint."""
    deadline = started + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
                msg = "server exited before it was ready (see its log)"
                raise RuntimeError(msg)
            text = log.read_text(errors="replace")
            if any(marker in text for marker in STARTUP_FAILED):
                msg = "a worker failed to start (see its log)"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(READY_POLL_S)
    msg = f"not ready after {READY_TIMEOUT_S:.0f} s"
    raise RuntimeError(msg)


def check_answers(
    base: str, server: Server, applicants: list[dict[str, Any]]
) -> tuple[list[float], str | None]:
    """Score known applicants one by one (and as one batch for ours); every answer must validate.

    Returns the probabilities and the model version, to compare configurations with each other
    (none for a server that scores no model).
    """
    probabilities: list[float] = []
    versions: set[str] = set()
    answers_decisions = server.is_ours or not server.scores_model
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for applicant in applicants:
            r = client.post(server.check_path, json=applicant)
            if r.status_code != 200:
                msg = f"{server.check_path} answered {r.status_code}: {r.text[:300]}"
                raise RuntimeError(msg)
            body = r.json()
            if answers_decisions:
                try:
                    decision = Decision.model_validate(body)
                except ValidationError as exc:
                    msg = f"{server.check_path} answer is not a Decision: {exc}"
                    raise RuntimeError(msg) from None
                probabilities.append(decision.probability_of_default)
                versions.add(decision.model_version)
            else:
                probabilities.append(float(body["probability_of_default"]))
                versions.add(str(body["model_version"]))
        if server.is_ours:
            r = client.post("/classify_batch", json=applicants)
            if r.status_code != 200:
                msg = f"/classify_batch answered {r.status_code}: {r.text[:300]}"
                raise RuntimeError(msg)
            batch = [Decision.model_validate(d) for d in r.json()]
            if len(batch) != len(applicants):
                msg = f"/classify_batch returned {len(batch)} answers for {len(applicants)}"
                raise RuntimeError(msg)
            worst = max(
                abs(d.probability_of_default - p) for d, p in zip(batch, probabilities, strict=True)
            )
            if worst > SAME_MODEL_TOLERANCE:
                msg = f"/classify_batch disagrees with /classify by {worst:.3g} in probability"
                raise RuntimeError(msg)
    if len(versions) != 1:
        msg = f"answers came from several models: {sorted(versions)}"
        raise RuntimeError(msg)
    if not server.scores_model:
        return [], None
    return probabilities, versions.pop()


def measure(
    *,
    round_: int,
    server: Server,
    load: Load,
    connections: int,
    root: psutil.Process,
    url: str,
    bodies: Path,
    warmup_s: int,
    duration_s: int,
) -> Point:
    """Warm up, let the server drain, then one measured wrk run with its tree sampled alongside.

    Draining matters for an overloaded server: connections wrk abandons at the end of a run
    stay queued in the server, and without a drain the next run would pay for them.
    """
    drain(root, url + server.ready_path)
    if warmup_s > 0:
        run_wrk(url, bodies, load.path, connections, warmup_s)
        drain(root, url + server.ready_path)
    cpu_before = _children_cpu_s()
    with TreeSampler(root) as sampler:
        s = run_wrk(url, bodies, load.path, connections, duration_s)
    generator_cpu_s = _children_cpu_s() - cpu_before
    wall = s["duration_us"] / 1e6
    requests = int(s["requests"])
    answered = requests - int(s["errors"]["status"])  # a refusal (429) is not throughput
    lat = s["latency_us"]

    def ms(us: float) -> float | None:
        return us / 1e3 if requests else None

    return Point(
        round=round_,
        server=server.key,
        load=load.name,
        concurrency=connections,
        duration_s=wall,
        requests=requests,
        requests_per_s=answered / wall,
        applicants_per_s=answered * load.applicants_per_request / wall,
        p50_ms=ms(lat["p50"]),
        p90_ms=ms(lat["p90"]),
        p99_ms=ms(lat["p99"]),
        p999_ms=ms(lat["p999"]),
        max_ms=ms(lat["max"]),
        errors={k: int(v) for k, v in s["errors"].items()},
        server_cpu_cores=sampler.cpu_s / sampler.wall_s,
        server_cpu_ms_per_request=1e3 * sampler.cpu_s / requests if requests else None,
        generator_cpu_cores=generator_cpu_s / sampler.wall_s,
        machine_busy_cores=sampler.machine_busy_s / sampler.wall_s,
        pss_peak_mb=sampler.peak_pss_mb,
    )


QUIET: Final = {"BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(REPO)}
"""Environment of every configuration: no usage data sent, the repository importable."""


def bentoml_serve(service: str) -> tuple[str, ...]:
    """The command line that serves a BentoML service on 127.0.0.1 (port filled in per start)."""
    return (str(BIN / "bentoml"), "serve", service, "--host", "127.0.0.1", "--port", "{port}")


def ours(key: str, label: str, *, batching: bool, loads: tuple[Load, ...]) -> Server:
    """Our service as `bentoml serve` starts it, with adaptive batching on or off."""
    return Server(
        key=key,
        label=label,
        argv=bentoml_serve("service:CreditRiskService"),
        # the token list empty: measure the service, not a 401 from its authentication
        env={**QUIET, "CREDIT_RISK_API_TOKENS": "", "CREDIT_RISK_BATCHING": str(int(batching))},
        ready_path="/readyz",
        check_path="/classify",
        loads=loads,
        is_ours=True,
    )


def servers(concurrency: tuple[int, ...], batch_concurrency: tuple[int, ...]) -> list[Server]:
    """The configurations under test, in their first-round order."""
    classify = Load("classify", "/classify", "single", 1, concurrency)
    batch = Load("classify_batch", "/classify_batch", "batch", BATCH_SIZE, batch_concurrency)
    return [
        ours("ours-batching", "ours, adaptive batching", batching=True, loads=(classify, batch)),
        ours("ours-no-batching", "ours, batching off", batching=False, loads=(classify,)),
        Server(
            key="flask-gunicorn",
            label="Flask + gunicorn, 2 sync workers",
            argv=(
                str(BIN / "gunicorn"),
                "--no-control-socket",
                *("--workers", "2", "--bind", "127.0.0.1:{port}"),
                "load_tests.baseline.app:app",
            ),
            env=dict(QUIET),
            ready_path="/health",
            check_path="/predict",
            loads=(Load("classify", "/predict", "single", 1, concurrency),),
            is_ours=False,
        ),
        Server(
            key="bentoml-noop",
            label="BentoML, no-op model (ceiling)",
            argv=bentoml_serve("load_tests.ceiling.service:CeilingService"),
            env=dict(QUIET),
            loads=(classify,),  # one applicant per request only: the ceiling of /classify
            ready_path="/readyz",
            check_path="/classify",
            is_ours=False,
            scores_model=False,
        ),
    ]


def resolve_model_tag() -> str:
    """The exact tag behind credit_risk:latest, so every configuration serves the same one."""
    import bentoml  # noqa: PLC0415 (slow import, only needed here)

    return str(bentoml.models.get("credit_risk:latest").tag)


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPU, memory, kernel, versions, commit."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    ).stdout.strip()
    versions = {}
    for dist in ("bentoml", "scikit-learn", "pandas", "numpy", "flask", "gunicorn"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version  # noqa: PLC0415

            versions[dist] = version(dist)
    return {
        "cpu": cpu_model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk_version[0] if wrk_version else "unknown",
        "versions": versions,
        "commit": commit or "unknown",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass(frozen=True)
class Plan:
    """What every start in a run shares: its settings, the pinned model, bodies and check set."""

    args: argparse.Namespace
    tag: str
    bodies: dict[str, Path]
    check_set: list[dict[str, Any]]


def write_load_bodies(workdir: Path) -> dict[str, Path]:
    """The body files wrk rotates through, one per kind of load."""
    return {
        "single": write_bodies(workdir / "single.jsonl", sample_applicants(SINGLE_BODIES, seed=1)),
        "batch": write_bodies(
            workdir / "batch.jsonl",
            [sample_applicants(BATCH_SIZE, seed=100 + i) for i in range(BATCH_BODIES)],
        ),
    }


def schedule(configs: Sequence[Server], args: argparse.Namespace) -> str:
    """How long the run drives load: every measured run, each a warm-up plus a measured window."""
    runs = args.rounds * sum(len(load.concurrency) for c in configs for load in c.loads)
    load_min = runs * (args.warmup + args.duration) / 60
    return (
        f"{runs} runs x ({args.warmup} s warm-up + {args.duration} s) = {load_min:.1f} min of "
        f"load, plus {args.rounds * len(configs)} server starts"
    )


def ready_and_checked(
    start: Start, server: Server, plan: Plan, *, base: str, log: Path, spawned: Spawned
) -> None:
    """Fill in `start`: time to ready, checked answers, memory at rest; raise if anything is off."""
    root, started = spawned
    start.ready_s = wait_ready(base + server.ready_path, root, started, log)
    start.probabilities, start.model_version = check_answers(base, server, plan.check_set)
    start.first_answer_s = time.perf_counter() - started
    if server.scores_model and start.model_version != plan.tag:
        msg = f"serves {start.model_version}, expected {plan.tag}"
        raise RuntimeError(msg)
    time.sleep(1.0)  # let start-up work settle before reading memory
    start.pss_idle_mb = tree_pss_mb(root)
    start.processes = len(process_tree(root))
    _log(
        f"  ready in {start.ready_s:.1f} s, {start.processes} processes, "
        f"{start.pss_idle_mb:.0f} MB PSS idle"
    )


def _log_point(point: Point) -> None:
    _log(
        f"  {point.load:>14} c={point.concurrency:<4} "
        f"{point.requests_per_s:8.1f} req/s  "
        f"p50 {point.p50_ms or 0:7.1f} ms  "
        f"p99 {point.p99_ms or 0:7.1f} ms  "
        f"errors {sum(point.errors.values())}  "
        f"cpu {point.server_cpu_cores:.2f}+"
        f"{point.generator_cpu_cores:.2f} cores"
    )


def start_and_drive(round_: int, server: Server, plan: Plan) -> tuple[Start, list[Point]]:
    """One configuration in one round: start it, check it, measure every load at every
    concurrency. A failure ends its measurements and is recorded in the Start, not raised."""
    _log(f"round {round_}: {server.label}")
    start = Start(round_, server.key, None, None, None, 0, None)
    start.busy_before_cores = machine_busy_cores(BUSY_PROBE_S)
    points: list[Point] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = plan.args.out / "bench-logs" / f"{server.key}-round{round_}.log"
    with running(server, port, log) as spawned:
        try:
            ready_and_checked(start, server, plan, base=base, log=log, spawned=spawned)
            for load in server.loads:
                for connections in load.concurrency:
                    point = measure(
                        round_=round_,
                        server=server,
                        load=load,
                        connections=connections,
                        root=spawned[0],
                        url=base,
                        bodies=plan.bodies[load.bodies],
                        warmup_s=plan.args.warmup,
                        duration_s=plan.args.duration,
                    )
                    points.append(point)
                    _log_point(point)
        except (RuntimeError, httpx.HTTPError) as exc:
            start.failure = str(exc)
            _log(f"  FAILED: {exc} (log: {log})")
    return start, points


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every round, every configuration, every load; returns the raw results."""
    tag = args.model or resolve_model_tag()
    configs = servers(args.concurrency, args.batch_concurrency)
    if args.only:
        configs = [c for c in configs if c.key in args.only]
    for c in configs:
        c.env["CREDIT_RISK_MODEL"] = tag  # pin every configuration to the same model version
    _log(f"schedule: {schedule(configs, args)}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-bodies-"))
    starts: list[Start] = []
    points: list[Point] = []
    t_begin = time.perf_counter()
    try:
        plan = Plan(
            args, tag, write_load_bodies(workdir), sample_applicants(CHECK_APPLICANTS, seed=7)
        )
        for round_ in range(1, args.rounds + 1):
            for server in configs if round_ % 2 else list(reversed(configs)):
                start, measured = start_and_drive(round_, server, plan)
                starts.append(start)
                points.extend(measured)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return record(args, tag, configs=configs, starts=starts, points=points, t_begin=t_begin)


def record(
    args: argparse.Namespace,
    tag: str,
    *,
    configs: Sequence[Server],
    starts: Sequence[Start],
    points: Sequence[Point],
    t_begin: float,
) -> dict[str, Any]:
    """The raw results as plain data: what ran, on what, with which settings, and every figure."""
    return {
        "model": tag,
        "machine": machine_facts(),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": list(args.concurrency),
            "batch_concurrency": list(args.batch_concurrency),
            "batch_size": BATCH_SIZE,
            "wrk_timeout_s": WRK_TIMEOUT_S,
            "generator": "wrk, 1 thread, keep-alive connections, closed loop",
            "wall_s": time.perf_counter() - t_begin,
        },
        "servers": [
            {"key": s.key, "label": s.label, "argv": list(s.argv), "env": s.env} for s in configs
        ],
        "starts": [asdict(s) for s in starts],
        "points": [asdict(p) for p in points],
    }


def ready_to_drive(out: Path) -> bool:
    """False (after saying how to install it) without wrk; else create `out` and make SIGTERM
    an exit, so that `running` still stops the servers, which run in their own sessions."""
    if shutil.which("wrk") is None:
        print(WRK_INSTALL_HINT, file=sys.stderr)
        return False
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    return True


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as the report prints it when the caller names none."""
    given = list(argv if argv is not None else sys.argv[1:])
    return shlex.join(["python", "-m", module, *given])


def _log(message: str) -> None:
    print(message, flush=True)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (`make bench`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up per run (0: none)"
    )
    # 128: what our service admits at once by default (2 API workers x CREDIT_RISK_MAX_IN_FLIGHT
    # 64); past that it sheds by design, which `make overload` measures
    parser.add_argument("--concurrency", type=_ints, default=(1, 16, 64, 128))
    parser.add_argument("--batch-concurrency", type=_ints, default=(1, 4, 16))
    parser.add_argument("--only", nargs="*", help="server keys to run (default: all)")
    parser.add_argument("--model", help="model tag to serve (default: credit_risk:latest)")
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    parser.add_argument("--command", default=None, help="command line to print in the report")
    args = parser.parse_args(argv)
    if not ready_to_drive(args.out):
        return 2
    results = run(args)
    results["command"] = args.command or command_line("load_tests.bench", argv)
    (args.out / "benchmark.json").write_text(json.dumps(results, indent=2))
    from load_tests.report import write_report  # noqa: PLC0415 (matplotlib is slow to import)

    write_report(results, args.out)
    _log(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.png'}")
    failed = [s for s in results["starts"] if s["failure"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
