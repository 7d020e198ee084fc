"""Overload: drive several times the measured capacity, then normal load again, and account for
every request.

    python -m load_tests.overload [--capacity RPS] [--factor 4] [--flood 30] [--out reports]

1. Capacity: wrk with 64 keep-alive connections (as `make bench`), unless `--capacity` is given.
2. One open-loop run of `--before` s at half the capacity (normal load), `--flood` s at
   `--factor` x the capacity, then `--after` s at half again. Requests are sent on schedule
   whether or not earlier ones came back (an open loop, as real clients arrive; wrk and Locust
   are closed loops, which slow down with the server and so cannot overload it), and latency
   counts from the scheduled send time, so a stalled server cannot hide its queue.
3. Capacity again with wrk: is the throughput back to normal once the load drops?

Recorded: every response's status and latency (per phase and per second), the refusals (429 from
the admission gate, 503 from the runner's admission bound) and how fast they come back against
`SHED_P99_BOUND_MS`, p99 of the accepted requests against `ACCEPTED_P99_BOUND_MS`, the server's
PSS once a second (flat once the flood is on?), the process tree's PIDs before and after (a
crashed and restarted worker has a new PID), and the decision log: every 200's decision_id must
be in it exactly once. Results go to
`<out>/overload.json` and `<out>/overload.md`.

Duration, with the defaults: 3 s of warm-up, two 10 s capacity runs and 10 + 30 + 20 s of open
loop = 83 s of load, plus the server's start (about 10 s) and the drains between the steps:
about 2 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import psutil
import uvloop

from credit_risk.decision_store import open_store
from credit_risk.serving.tuning import DEFAULT_MAX_IN_FLIGHT, RUNNER_MAX_LATENCY_MS
from load_tests import bench
from load_tests.applicants import sample_applicants, write_bodies

CAPACITY_CONNECTIONS: Final = 64
"""Connections of the capacity measurement: the benchmark's reference point."""
CAPACITY_S: Final = 10
WARMUP_S: Final = 3
NORMAL_FRACTION: Final = 0.5
"""Normal load, as a share of capacity: a service runs with headroom."""
BODIES: Final = 2000
"""Distinct one-applicant bodies, as the benchmark."""
MAX_CONNECTIONS: Final = 4000
"""The open-loop generator's connection cap; a request due when every connection is busy and
the cap is reached is counted as `not_sent` (the generator, not the server, ran out)."""
CONNECT_TIMEOUT_S: Final = 5.0
REQUEST_TIMEOUT_S: Final = 15.0
"""Client-side limit, above the service's 10 s timeout: the server, not the client, ends a slow
request."""
ACCEPTED_P99_BOUND_MS: Final = RUNNER_MAX_LATENCY_MS
"""The documented bound for accepted requests under overload: the runner's admission bound
(1 s). Each API worker admits at most CREDIT_RISK_MAX_IN_FLIGHT requests (64), so an admitted
request waits behind at most that many; the runner sheds any row it cannot score within 1 s."""
SHED_P99_BOUND_MS: Final = ACCEPTED_P99_BOUND_MS
"""The documented bound for refusals: a refused client learns it no later than an accepted one
gets its answer. The admission gate writes a 429 before any other work, so what a refusal waits
for is the API worker's event loop reaching the request at all."""
ONSET_S: Final = 2.0
"""The flood's first seconds: when the offered rate steps up eightfold, the generator opens
~1,000 new connections at once; the accept queue (BentoML's backlog, 2,048) overflows, and the
dropped connection attempts are retried by the client's kernel 1, 3 and 7 s later. Those
seconds are in the report; the latency bounds are judged from then on, the steady state a
flood settles into. (A 4,096 backlog drops nothing, but then the same connections wait in the
queue instead: worse p99 after the onset, measured.)"""
FLAT_PSS_TOLERANCE: Final = 0.02
"""Memory counts as flat when, from the middle of the flood to the end of the run, the server
tree's PSS stays within this share of its value then: no growth with time under sustained
overload, nor after it. (The rise at the onset is the memory of the flood's extra connections,
up to the generator's cap, and is reported.)"""
PSS_EVERY_S: Final = 1.0
DRAIN_S: Final = 30.0
"""Upper bound on waiting for the server to finish left-over requests before the log is read."""
DECISION_ID = re.compile(rb'"decision_id":"([0-9a-f]+)"')


@dataclass
class Shot:
    """One request of the open loop."""

    phase: str
    due: float  # scheduled send time, seconds from the start of the run
    done: float
    status: int | str  # HTTP status, or the client-side failure
    decision_id: str | None = None


@dataclass
class Phase:
    """One segment of the open-loop run."""

    name: str
    rate: float
    seconds: float


class OpenLoop:
    """A minimal HTTP/1.1 keep-alive client that sends on a fixed schedule.

    Hand-written on asyncio streams because it must cost the 2-core machine little: a request is
    one pre-encoded write and a read of status line, headers and a Content-Length body.
    """

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.shots: list[Shot] = []
        self.resent = 0  # requests sent again on a new connection after a stale keep-alive one
        self.tasks: set[asyncio.Task[None]] = set()
        self.t0 = 0.0

    async def _connection(
        self, *, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool] | None:
        """An idle keep-alive connection (reused=True) or a new one; None at the cap."""
        if self.idle and not fresh:
            return (*self.idle.pop(), True)
        if self.open >= MAX_CONNECTIONS:
            return None
        self.open += 1
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.open -= 1
            raise
        return reader, writer, False

    async def _one(self, phase: str, due: float, request: bytes) -> None:
        fresh = False
        while True:
            try:
                conn = await self._connection(fresh=fresh)
            except (OSError, TimeoutError) as exc:
                self.shots.append(Shot(phase, due, self._now(), f"connect:{type(exc).__name__}"))
                return
            if conn is None:
                self.shots.append(Shot(phase, due, self._now(), "not_sent"))
                return
            reader, writer, reused = conn
            try:
                writer.write(request)
                status, body, keep = await asyncio.wait_for(_response(reader), REQUEST_TIMEOUT_S)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self.open -= 1
                writer.close()
                stale = (
                    isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
                ) or isinstance(exc, ConnectionResetError)
                if reused and stale and not fresh:
                    # the server had closed this idle keep-alive connection before our request
                    # reached it; like any HTTP client, send it once more on a new connection
                    # (counted: a reset could also hide a request the server had taken)
                    fresh = True
                    self.resent += 1
                    continue
                self.shots.append(Shot(phase, due, self._now(), type(exc).__name__))
                return
            break
        found = DECISION_ID.search(body) if status == 200 else None
        self.shots.append(
            Shot(phase, due, self._now(), status, found.group(1).decode() if found else None)
        )
        if keep:
            self.idle.append((reader, writer))
        else:
            self.open -= 1
            writer.close()

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    async def run(self, phases: Sequence[Phase]) -> list[Shot]:
        """Send every phase's requests on schedule; wait for the stragglers (bounded)."""
        self.t0 = time.perf_counter()
        start = 0.0
        k = 0
        for phase in phases:
            n = int(phase.rate * phase.seconds)
            for i in range(n):
                due = start + i / phase.rate
                delay = due - self._now()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(
                    self._one(phase.name, due, self.requests[k % len(self.requests)])
                )
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                k += 1
            start += phase.seconds
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=REQUEST_TIMEOUT_S + CONNECT_TIMEOUT_S)
        for _, writer in self.idle:
            writer.close()
        return self.shots


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"connection" and value.strip().lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


def encode_requests(host: str, port: int, bodies: list[dict[str, Any]]) -> list[bytes]:
    """Pre-encoded POST /classify requests, one per body."""
    out = []
    for body in bodies:
        payload = json.dumps(body, separators=(",", ":")).encode()
        out.append(
            b"POST /classify HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(payload), payload)
        )
    return out


# --- what the server did -----------------------------------------------------------------------


class PssSampler:
    """The server tree's PSS once a second, for the whole run."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, bench.tree_pss_mb(self.root)))
            self._stop.wait(PSS_EVERY_S)

    def mark(self) -> float:
        """Seconds since sampling started (to line phases up with samples)."""
        return time.perf_counter() - self.t0

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def tree_pids(root: psutil.Process) -> dict[int, str]:
    """PID -> role of every server process (a restarted worker shows up as a new PID)."""
    out = {}
    for proc in bench.process_tree(root):
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            role = "supervisor"
            if "--service-name" in argv:
                role = argv[argv.index("--service-name") + 1]
            if "--worker-id" in argv:
                role += ":" + argv[argv.index("--worker-id") + 1]
            out[proc.pid] = role
    return out


def store_url(log_dir: Path) -> str:
    """The decision store of the server under test (SQLite, in `log_dir`)."""
    return f"sqlite:///{log_dir / 'decisions.sqlite'}"


def read_decision_ids(log_dir: Path) -> Counter[str]:
    """decision_id -> number of records in the server's decision store."""
    store = open_store(store_url(log_dir))
    try:
        return Counter(r.decision_id for r in store.records())
    finally:
        store.close()


# --- figures ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def latency_ms(shots: Sequence[Shot]) -> dict[str, float | None]:
    """p50/p99/max latency in ms from the scheduled send time."""
    values = [1e3 * (s.done - s.due) for s in shots]
    return {
        "p50": _r(pct(values, 50)),
        "p99": _r(pct(values, 99)),
        "max": _r(max(values) if values else None),
    }


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def phase_figures(
    shots: Sequence[Shot], phase: Phase, skip_s: float = 0.0, phase_start: float = 0.0
) -> dict[str, Any]:
    """Offered and answered rates, statuses and latencies of one phase (past its first
    `skip_s` seconds, given the phase's start in the run)."""
    mine = [s for s in shots if s.phase == phase.name and s.due >= phase_start + skip_s]
    statuses = Counter(str(s.status) for s in mine)
    ok = [s for s in mine if s.status == 200]
    shed = [s for s in mine if s.status in {429, 503}]
    seconds = phase.seconds - skip_s
    return {
        "phase": phase.name + (f" after its first {skip_s:g} s" if skip_s else ""),
        "offered_per_s": round(phase.rate, 1),
        "seconds": seconds,
        "requests": len(mine),
        "statuses": dict(sorted(statuses.items())),
        "accepted_per_s": round(len(ok) / seconds, 1),
        "accepted_latency_ms": latency_ms(ok),
        "shed_latency_ms": latency_ms(shed),
        "shed_share": round(len(shed) / len(mine), 4) if mine else None,
    }


def per_second(shots: Sequence[Shot]) -> list[dict[str, Any]]:
    """Statuses and the p99 of accepted and of refused requests for each second of the run (by
    scheduled send time)."""
    buckets: dict[int, list[Shot]] = {}
    for s in shots:
        buckets.setdefault(int(s.due), []).append(s)
    out = []
    for second in sorted(buckets):
        mine = buckets[second]
        ok = [1e3 * (s.done - s.due) for s in mine if s.status == 200]
        shed = [1e3 * (s.done - s.due) for s in mine if s.status in {429, 503}]
        out.append(
            {
                "second": second,
                "offered": len(mine),
                "statuses": dict(Counter(str(s.status) for s in mine)),
                "accepted_p99_ms": _r(pct(ok, 99)),
                "shed_p99_ms": _r(pct(shed, 99)),
            }
        )
    return out


def recovery_s(seconds: list[dict[str, Any]], flood_end: float) -> float | None:
    """Seconds from the end of the flood until every later second had everything it offered
    answered 200 (how long refusals and failures outlast the load)."""
    recovered: float | None = None
    for row in seconds:
        if row["second"] < flood_end:
            continue
        if row["statuses"].get("200", 0) == row["offered"]:
            recovered = row["second"] - flood_end if recovered is None else recovered
        else:
            recovered = None
    return recovered


def wrk_point(url: str, bodies: Path, seconds: int) -> dict[str, Any]:
    """One closed-loop wrk run at the capacity connections."""
    s = bench.run_wrk(url, bodies, "/classify", CAPACITY_CONNECTIONS, seconds)
    wall = s["duration_us"] / 1e6
    return {
        "connections": CAPACITY_CONNECTIONS,
        "seconds": round(wall, 2),
        "requests": s["requests"],
        "ok": s["requests"] - s["errors"]["status"],  # wrk counts a status >= 400 as an error
        "requests_per_s": round((s["requests"] - s["errors"]["status"]) / wall, 1),  # 200s
        "p50_ms": round(s["latency_us"]["p50"] / 1e3, 1),
        "p99_ms": round(s["latency_us"]["p99"] / 1e3, 1),
        "errors": s["errors"],
    }


# --- the run -----------------------------------------------------------------------------------


def server_config(tag: str, log_dir: Path, extra_env: Sequence[str]) -> bench.Server:
    """Our service as `bentoml serve` starts it, with its decision store under `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return bench.Server(
        key="overload",
        label="ours, default settings",
        argv=bench.bentoml_serve("service:CreditRiskService"),
        env={
            **bench.QUIET,
            "CREDIT_RISK_MODEL": tag,
            "CREDIT_RISK_API_TOKENS": "",
            "CREDIT_RISK_DECISION_STORE": store_url(log_dir),
            **dict(kv.split("=", 1) for kv in extra_env),
        },
        ready_path="/readyz",
        check_path="/classify",
        loads=(),
        is_ours=True,
    )


@dataclass
class Measured:
    """Everything one run observed, before it is reduced to figures."""

    ready_s: float
    busy_before_cores: float
    warmup: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    phases: list[Phase]
    shots: list[Shot]
    resent: int
    cpu: dict[str, float]
    pss: list[tuple[float, float]]
    marks: dict[str, float]
    pids_before: dict[int, str]
    pids_after: dict[int, str]
    logged: Counter[str]


def drive_open_loop(
    loop: OpenLoop, phases: Sequence[Phase], root: psutil.Process, pss: PssSampler, since: float
) -> tuple[list[Shot], dict[str, float]]:
    """Run the open loop; also where the CPU went meanwhile (the server, this generator, the
    host's idle, iowait and steal) and how many connections a full accept queue dropped."""
    server_cpu0, own_cpu0, host0 = _tree_cpu_s(root), _own_cpu_s(), psutil.cpu_times()
    overflows0 = _listen_overflows()
    shots = uvloop.run(loop.run(phases))
    open_loop_s = pss.mark() - since
    host1 = psutil.cpu_times()
    listen_overflows = _listen_overflows() - overflows0
    cpu = {
        "open_loop_s": round(open_loop_s, 1),
        "server_cores": round((_tree_cpu_s(root) - server_cpu0) / open_loop_s, 2),
        "generator_cores": round((_own_cpu_s() - own_cpu0) / open_loop_s, 2),
        # a virtual machine's CPUs can be taken by its host (steal) or wait on disk
        **{
            f"host_{field}_cores": round(
                (getattr(host1, field, 0.0) - getattr(host0, field, 0.0)) / open_loop_s, 2
            )
            for field in ("idle", "iowait", "steal")
        },
        # connection attempts the kernel dropped because an accept queue was full; the
        # client's kernel retries them after 1, 3, 7 s
        "listen_overflows": listen_overflows,
    }
    return shots, cpu


def measure(args: argparse.Namespace, tag: str, workdir: Path) -> Measured:
    """Start the server, measure, overload, measure again, read the decision log."""
    log_dir = workdir / "decisions"
    server = server_config(tag, log_dir, args.server_env)
    applicants = sample_applicants(BODIES, seed=11)
    bodies = write_bodies(workdir / "single.jsonl", applicants)
    port = bench.free_port()
    url = f"http://127.0.0.1:{port}"
    log = args.out / "bench-logs" / "overload-server.log"
    busy = bench.machine_busy_cores(bench.BUSY_PROBE_S)
    server_cpus, generator_cpus = split_cpus()
    os.sched_setaffinity(0, server_cpus)  # the server's processes inherit this at spawn
    with bench.running(server, port, log) as (root, started):
        os.sched_setaffinity(0, generator_cpus)  # this process (the open loop) and wrk
        ready_s = bench.wait_ready(url + "/readyz", root, started, log)
        pids_before = tree_pids(root)
        with PssSampler(root) as pss:
            marks: dict[str, float] = {}
            warmup = wrk_point(url, bodies, args.warmup)
            bench.drain(root, url + "/readyz")
            marks["capacity_before"] = pss.mark()
            before = wrk_point(url, bodies, args.capacity_seconds)
            capacity = args.capacity or before["requests_per_s"]
            _log(f"capacity: {capacity:.0f} requests/s at {CAPACITY_CONNECTIONS} connections")
            bench.drain(root, url + "/readyz")
            phases = [
                Phase("before", NORMAL_FRACTION * capacity, args.before),
                Phase("flood", args.factor * capacity, args.flood),
                Phase("after", NORMAL_FRACTION * capacity, args.after),
            ]
            marks["open_loop"] = pss.mark()
            loop = OpenLoop("127.0.0.1", port, encode_requests("127.0.0.1", port, applicants))
            shots, cpu = drive_open_loop(loop, phases, root, pss, since=marks["open_loop"])
            cpu.update(server_cpus=sorted(server_cpus), generator_cpus=sorted(generator_cpus))
            marks["capacity_after"] = pss.mark()
            after = wrk_point(url, bodies, args.capacity_seconds)
            bench.drain(root, url + "/readyz")
            marks["end"] = pss.mark()
        pids_after = tree_pids(root)
        time.sleep(1.0)  # the monitor's file handler flushes per record; let the last land
        logged = read_decision_ids(log_dir)
    os.sched_setaffinity(0, server_cpus | generator_cpus)
    return Measured(
        ready_s=ready_s,
        busy_before_cores=busy,
        warmup=warmup,
        before=before,
        after=after,
        phases=phases,
        shots=shots,
        resent=loop.resent,
        cpu=cpu,
        pss=pss.samples,
        marks=marks,
        pids_before=pids_before,
        pids_after=pids_after,
        logged=logged,
    )


def split_cpus() -> tuple[set[int], set[int]]:
    """The usable CPUs split between the server and the load generator, so the generator
    cannot take the server's capacity during a run (on one CPU, both share it)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    half = len(cpus) // 2
    return set(cpus[half:]), set(cpus[:half])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One overload run, reduced to the figures the report shows."""
    tag = args.model or bench.resolve_model_tag()
    workdir = Path(tempfile.mkdtemp(prefix="overload-"))
    try:
        m = measure(args, tag, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures(m, args, tag)


def figures(m: Measured, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """What the report and the test read from one run."""
    shots = m.shots
    return {
        "model": tag,
        "machine": {**bench.machine_facts(), "busy_before_cores": round(m.busy_before_cores, 2)},
        "ready_s": round(m.ready_s, 2),
        "settings": run_settings(args, m.phases),
        "cpu_during_open_loop": m.cpu,
        "server_env": args.server_env,
        "capacity_before": m.before,
        "capacity_after": m.after,
        "throughput_after_vs_before": round(
            m.after["requests_per_s"] / m.before["requests_per_s"], 3
        ),
        **open_loop_figures(shots, m.phases, flood_start=args.before),
        "server_errors": sum(
            1 for s in shots if isinstance(s.status, int) and s.status >= 500 and s.status != 503
        ),
        "resent_after_stale_connection": m.resent,
        "client_failures": dict(
            Counter(str(s.status) for s in shots if not isinstance(s.status, int))
        ),
        "pss_mb": pss_figures(m.pss, m.marks, args),
        "processes": {
            "before": {str(k): v for k, v in sorted(m.pids_before.items())},
            "after": {str(k): v for k, v in sorted(m.pids_after.items())},
            "unchanged": m.pids_before == m.pids_after,
        },
        "decision_log": decision_log_figures(shots, m.logged, (m.warmup, m.before, m.after)),
    }


def run_settings(args: argparse.Namespace, phases: Sequence[Phase]) -> dict[str, Any]:
    """The run's parameters and the bounds its checks use."""
    server_env = dict(kv.split("=", 1) for kv in args.server_env)
    return {
        "capacity_connections": CAPACITY_CONNECTIONS,
        "capacity_given": args.capacity,
        "factor": args.factor,
        "normal_fraction": NORMAL_FRACTION,
        "phases": [asdict(p) for p in phases],
        "max_in_flight_per_worker": int(
            server_env.get("CREDIT_RISK_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)
        ),
        "accepted_p99_bound_ms": ACCEPTED_P99_BOUND_MS,
        "shed_p99_bound_ms": SHED_P99_BOUND_MS,
        "onset_s": ONSET_S,
        "generator": "open loop, keep-alive, latency from the scheduled send time",
    }


def open_loop_figures(
    shots: Sequence[Shot], phases: Sequence[Phase], flood_start: float
) -> dict[str, Any]:
    """Per phase and per second, the settled flood against the latency bounds, and recovery."""
    flood = phases[1]
    per_phase = [phase_figures(shots, p) for p in phases]
    before, _, after = (p["accepted_latency_ms"]["p99"] for p in per_phase)
    settled = phase_figures(shots, flood, ONSET_S, phase_start=flood_start)
    seconds = per_second(shots)
    return {
        "phases": per_phase,
        "flood_after_onset": settled,
        "per_second": seconds,
        "recovered_after_s": recovery_s(seconds, flood_start + flood.seconds),
        "p99_after_vs_before": _r((after or 0.0) / (before or math.inf), 2),
        "accepted_p99_within_bound": _within(
            settled["accepted_latency_ms"]["p99"], ACCEPTED_P99_BOUND_MS
        ),
        "shed_p99_within_bound": _within(settled["shed_latency_ms"]["p99"], SHED_P99_BOUND_MS),
    }


def pss_figures(
    samples: Sequence[tuple[float, float]], marks: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    """The server tree's memory at the run's landmarks, and whether it stayed flat from the
    middle of the flood on."""
    values = [mb for _, mb in samples]
    settled = marks["open_loop"] + args.before + args.flood / 2
    at_settled = [mb for t, mb in samples if t >= settled]
    drift = (max(at_settled) - min(at_settled)) / at_settled[0] if at_settled else None
    return {
        "samples": [(round(t, 1), round(mb, 1)) for t, mb in samples],
        "marks_s": {k: round(v, 1) for k, v in marks.items()},
        "first": round(values[0], 1) if values else None,
        "before_flood": _r(_pss_at(samples, marks["open_loop"] + args.before)),
        "mid_flood": _r(at_settled[0]) if at_settled else None,
        "end_of_flood": _r(_pss_at(samples, marks["open_loop"] + args.before + args.flood)),
        "range_from_mid_flood": _r(drift, 4),
        "flat_from_mid_flood": drift is not None and drift <= FLAT_PSS_TOLERANCE,
        "peak": round(max(values), 1) if values else None,
        "last": round(values[-1], 1) if values else None,
    }


def decision_log_figures(
    shots: Sequence[Shot], logged: Counter[str], wrk_runs: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Every open-loop 200 logged exactly once, and every other record accounted for."""
    ok_ids = [s.decision_id for s in shots if s.status == 200]
    answered = Counter(ok_ids)
    # wrk keeps no bodies: its 200s are counted, not matched; a request still in flight when a
    # wrk run ends is decided and logged but never counted, at most one per connection
    wrk_ok = sum(p["ok"] for p in wrk_runs)
    unmatched = sum(logged.values()) - sum(logged[i] for i in answered)
    # an open-loop request the client gave up on after sending may still have been decided
    gave_up = sum(
        1
        for s in shots
        if isinstance(s.status, str) and s.status != "not_sent" and not s.status.startswith("c")
    )
    in_flight_at_most = len(wrk_runs) * CAPACITY_CONNECTIONS + gave_up
    return {
        "open_loop_200s": len(ok_ids),
        "open_loop_200s_without_id": sum(1 for i in ok_ids if i is None),
        "wrk_200s_counted": wrk_ok,
        "records_not_from_the_open_loop": unmatched,
        "open_loop_given_up": gave_up,
        "in_flight_at_end_at_most": in_flight_at_most,
        "other_records_accounted": 0 <= unmatched - wrk_ok <= in_flight_at_most,
        "records": sum(logged.values()),
        "distinct_ids": len(logged),
        "answered_ids_missing_from_log": len([i for i in answered if logged.get(i, 0) == 0]),
        "ids_logged_more_than_once": len([n for n in logged.values() if n > 1]),
        "answered_ids_logged_exactly_once": all(logged.get(i) == 1 for i in answered)
        and None not in answered,
    }


def render(result: dict[str, Any]) -> str:
    """reports/overload.md"""
    lines = [*intro(result), *capacity_table(result), *open_loop_table(result)]
    lines += [*checks(result), ""]
    return "\n".join(lines)


def intro(result: dict[str, Any]) -> list[str]:
    """The command, the machine, the server and where the CPU went during the open loop."""
    machine, cpu = result["machine"], result["cpu_during_open_loop"]
    return [
        "# Overload",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Model `{result['model']}`; {machine['cpu']}, "
        f"{machine['usable_cpus']} CPUs, commit {machine['commit']}, "
        f"{machine['date']}; {machine['busy_before_cores']} cores busy "
        "with other work just before the start. Server: `bentoml serve "
        "service:CreditRiskService` "
        f"({result['settings']['max_in_flight_per_worker']} requests in flight per API "
        "worker, 2 API workers, 1 runner), ready in "
        f"{result['ready_s']} s. The server ran on CPUs {cpu['server_cpus']} and the load "
        f"generators on {cpu['generator_cpus']}: during the open loop the server used "
        f"{cpu['server_cores']} cores and the generator {cpu['generator_cores']}; the host's "
        f"CPUs were idle for {cpu['host_idle_cores']} cores, waiting "
        f"on disk for {cpu['host_iowait_cores']} and taken by the "
        f"hypervisor (steal) for {cpu['host_steal_cores']}. "
        "Connection attempts dropped at a full accept queue during the open loop: "
        f"{cpu['listen_overflows']}."
        + (
            f" Server environment: `{' '.join(result['server_env'])}`."
            if result["server_env"]
            else ""
        ),
    ]


def capacity_table(result: dict[str, Any]) -> list[str]:
    """wrk's closed-loop capacity before and after the flood."""
    lines = [
        "",
        "## Capacity (wrk, 64 connections, closed loop)",
        "",
        "| when | requests/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for when in ("capacity_before", "capacity_after"):
        p = result[when]
        errors = {k: v for k, v in p["errors"].items() if v}
        lines.append(
            f"| {when.removeprefix('capacity_')} the flood | {p['requests_per_s']:.0f} | "
            f"{p['p50_ms']} | {p['p99_ms']} | {errors or 'none'} |"
        )
    return [
        *lines,
        "",
        f"Throughput after / before: **{result['throughput_after_vs_before']:.2f}**.",
    ]


def open_loop_table(result: dict[str, Any]) -> list[str]:
    """Each open-loop phase, and the flood once settled: statuses, rates, latencies."""
    s = result["settings"]
    lines = [
        "",
        f"## Open loop: {s['normal_fraction']:g}x, {s['factor']:g}x, {s['normal_fraction']:g}x "
        "the capacity",
        "",
        "Latency counts from each request's scheduled send time.",
        "",
        "| phase | offered/s | s | requests | statuses | accepted/s | accepted p50 / p99 / max ms "
        "| shed share | shed p50 / p99 / max ms |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | --- |",
    ]
    phases = result["phases"]
    for p in [*phases[:2], result["flood_after_onset"], *phases[2:]]:
        a, r = p["accepted_latency_ms"], p["shed_latency_ms"]
        statuses = ", ".join(f"{k}: {v}" for k, v in p["statuses"].items())
        lines.append(
            f"| {p['phase']} | {p['offered_per_s']:.0f} | {p['seconds']:g} | {p['requests']} | "
            f"{statuses} | {p['accepted_per_s']:.0f} | {a['p50']} / {a['p99']} / {a['max']} | "
            f"{p['shed_share']:.1%} | {r['p50']} / {r['p99']} / {r['max']} |"
        )
    return lines


def checks(result: dict[str, Any]) -> list[str]:
    """What must hold under overload, each with its measured value."""
    s = result["settings"]
    return [
        "",
        "## Checks",
        "",
        f"- p99 of accepted requests once the flood has settled (after its first "
        f"{s['onset_s']:g} s) within {s['accepted_p99_bound_ms']} ms (the runner's admission "
        f"bound): **{result['accepted_p99_within_bound']}**",
        f"- p99 of refusals once the flood has settled (after its first {s['onset_s']:g} s) "
        f"within {s['shed_p99_bound_ms']} ms (no later than an answer): "
        f"**{result['shed_p99_within_bound']}**",
        f"- everything answered 200 again after the flood: after **{result['recovered_after_s']}"
        " s** (from then on every second had every request 200; None: not within the run); p99 "
        "of the normal load after the flood / before it: "
        f"**{result['p99_after_vs_before']}**",
        f"- 5xx other than 503: **{result['server_errors']}**; client-side failures: "
        f"{result['client_failures'] or 'none'}; requests sent again on a new connection after "
        f"the server had closed an idle one: {result['resent_after_stale_connection']}",
        f"- server processes unchanged (no worker crashed or restarted): "
        f"**{result['processes']['unchanged']}**",
        pss_check(result["pss_mb"]),
        decision_log_check(result["decision_log"]),
    ]


def pss_check(pss: dict[str, Any]) -> str:
    """The server tree's memory through the run, and whether it stayed flat."""
    return (
        f"- PSS of the server tree: {pss['first']} MB at the start, {pss['before_flood']} MB "
        f"when the flood began, {pss['mid_flood']} MB in its middle, "
        f"{pss['end_of_flood']} MB at its end, {pss['last']} MB at the end of the run, "
        f"{pss['peak']} MB peak ({len(pss['samples'])} samples, one a second); flat from the "
        f"middle of the flood to the end of the run (range within {FLAT_PSS_TOLERANCE:.0%}): "
        f"**{pss['flat_from_mid_flood']}** ({pss['range_from_mid_flood']:.1%})"
    )


def decision_log_check(d: dict[str, Any]) -> str:
    """Every answered decision logged once, and the other records accounted for."""
    return (
        f"- decision log: {d['open_loop_200s']} open-loop 200s, each decision_id logged exactly "
        f"once: **{d['answered_ids_logged_exactly_once']}** ({d['answered_ids_missing_from_log']}"
        f" missing, {d['ids_logged_more_than_once']} logged twice); the other "
        f"{d['records_not_from_the_open_loop']} records are wrk's {d['wrk_200s_counted']} counted "
        f"200s plus requests decided after their client stopped waiting (in flight when a wrk "
        f"run ended, or open-loop requests given up after {REQUEST_TIMEOUT_S:g} s; at most "
        f"{d['in_flight_at_end_at_most']}): **{d['other_records_accounted']}**"
    )


def _within(value: float | None, bound: float) -> bool | None:
    """None when there was nothing to measure."""
    return None if value is None else value <= bound


def _listen_overflows() -> int:
    """This network namespace's count of connections dropped at a full accept queue (Linux)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def _pss_at(samples: Sequence[tuple[float, float]], t: float) -> float | None:
    """The last PSS sample taken at or before `t` seconds."""
    earlier = [mb for at, mb in samples if at <= t]
    return earlier[-1] if earlier else None


def _tree_cpu_s(root: psutil.Process) -> float:
    total = 0.0
    for proc in bench.process_tree(root):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (also how the short test configures a run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=float, help="requests/s (default: measure it)")
    parser.add_argument("--factor", type=float, default=4.0, help="flood rate / capacity")
    parser.add_argument("--warmup", type=int, default=WARMUP_S, help="wrk warm-up seconds")
    parser.add_argument(
        "--capacity-seconds", type=int, default=CAPACITY_S, help="seconds per wrk capacity run"
    )
    parser.add_argument("--before", type=float, default=10.0, help="seconds of normal load")
    parser.add_argument("--flood", type=float, default=30.0, help="seconds of overload")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of normal load")
    parser.add_argument("--model", help="model tag (default: credit_risk:latest)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server, e.g. CREDIT_RISK_MAX_IN_FLIGHT=64 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=bench.REPO / "reports")
    parser.add_argument("--command", default=None, help="command line to print in the report")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (`make overload`)."""
    args = parse_args(argv)
    if not bench.ready_to_drive(args.out):
        return 2
    result = run(args)
    result["command"] = args.command or bench.command_line("load_tests.overload", argv)
    (args.out / "overload.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "overload.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
