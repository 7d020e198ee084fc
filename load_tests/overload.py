"""Overload: several times the measured capacity between normal load, every request accounted for.

    python -m load_tests.overload [--capacity RPS] [--factor 4] [--flood 30] [--out reports]

h2load's capacity (64 keep-alive connections), then an open loop of three h2load runs in rate
mode (`--before` s at half the capacity, `--flood` s at `--factor` x it, `--after` s at half),
then the capacity again; the method and what is recorded: docs/reliability.md, "Overload".
Results go to `<out>/overload.json` and `<out>/overload.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from credit_risk.decision_store import STORE_ENV, open_store
from credit_risk.serving.tuning import DEFAULT_MAX_IN_FLIGHT, RUNNER_MAX_LATENCY_MS
from load_tests import harness
from load_tests.applicants import sample_applicants

CONNECTIONS: Final = 64  # keep-alive connections of the capacity runs, as in the benchmark
NORMAL: Final = 0.5  # normal load, as a share of capacity: a service runs with headroom
REQUEST_TIMEOUT_S: Final = 15  # h2load's limit, above the service's 10 s: the server ends it
BOUND_MS: Final = RUNNER_MAX_LATENCY_MS  # the p99 bound under overload, accepted and refused
ONSET_S: Final = 2.0
"""The flood's first seconds, reported but left out of the bounds (the accept queue may
overflow when the rate steps up; the kernel retries those connections 1 and 3 s later)."""
FLAT_PSS: Final = 0.02
"""Memory is flat when, from mid-flood to the end, the tree's PSS stays within 2 % of its value
then (the rise at the onset is the flood's extra connections)."""
SHED: Final = {429, 503}
SUMMARY: Final = re.compile(r"requests: (\d+) total")


class Shot(NamedTuple):
    """One request: its phase, when it was sent (s into the run), its status (-1: the request
    failed on the client's side), its latency (s)."""

    phase: str
    sent: float
    status: int
    latency: float


@dataclass
class Phase:
    """One open-loop segment: h2load opens `per_period` connections every `period_ms`."""

    name: str
    rate: float
    seconds: float
    start: float
    per_period: int = 1
    period_ms: int = 1
    requests: int = 0

    def __post_init__(self) -> None:
        # the shortest period whose whole number of connections is within 1 % of the rate
        per = {ms: max(1, round(self.rate * ms / 1e3)) for ms in range(1, 1001)}
        error = {ms: abs(n * 1e3 / ms / self.rate - 1) for ms, n in per.items()}
        close = [ms for ms, e in error.items() if e <= 0.01]
        self.period_ms = close[0] if close else min(error, key=error.__getitem__)
        self.per_period = per[self.period_ms]
        self.rate = self.per_period * 1e3 / self.period_ms  # what is really offered
        self.requests = round(self.rate * self.seconds)


def h2load(url: str, body: Path, log: Path, n: int, phase: Phase | None = None) -> list[str]:
    """h2load's command line: `n` requests over the capacity connections (each request given
    REQUEST_TIMEOUT_S of silence), or one connection per request at `phase`'s rate (each given
    REQUEST_TIMEOUT_S in all, connecting included)."""
    argv = ["h2load", "--h1", "-d", str(body), "-H", "Content-Type: application/json", "-n", str(n)]
    argv += [f"--log-file={log}", f"{url}/classify"]
    if phase is None:
        return [*argv, "-c", str(CONNECTIONS), f"-N{REQUEST_TIMEOUT_S}"]
    argv += ["-c", str(n), f"-T{REQUEST_TIMEOUT_S}", "-r", str(phase.per_period)]
    return [*argv, f"--rate-period={phase.period_ms}ms"]


def start(url: str, body: Path, log: Path, n: int, phase: Phase | None = None) -> Any:
    """One h2load run under way."""
    return subprocess.Popen(h2load(url, body, log, n, phase), stdout=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str], log: Path, t0: float, phase: Phase | None) -> list[Shot]:
    """Wait for an h2load run: its log's requests (start, us since the epoch; status; us), and a
    failed request for each it counted but could not log (no connection, or no answer in time),
    placed at the end of its phase (when it was scheduled is not known)."""
    out = proc.communicate()[0]
    if (counts := SUMMARY.search(out)) is None:
        raise RuntimeError(f"h2load printed no summary:\n{out[-2000:]}")
    name, end = (phase.name, phase.start + phase.seconds - 1e-3) if phase else ("", 0.0)
    lines = (line.split("\t") for line in log.read_text().splitlines())
    shots = [Shot(name, int(t) / 1e6 - t0, int(status), int(us) / 1e6) for t, status, us in lines]
    return shots + [Shot(name, end, -1, math.inf)] * (int(counts[1]) - len(shots))


def capacity(url: str, body: Path, work: Path, n: int) -> dict[str, Any]:
    """One closed-loop run of `n` requests: requests/s answered 200, latency, every status."""
    log, began = work / f"capacity-{time.monotonic_ns()}.log", time.perf_counter()
    shots = finished(start(url, body, log, n), log, 0.0, None)
    wall, ok = time.perf_counter() - began, [s.latency for s in shots if s.status == 200]
    return {
        **{"connections": CONNECTIONS, "seconds": round(wall, 2), "requests": len(shots)},
        **{"ok": len(ok), "requests_per_s": round(len(ok) / wall, 1)},
        **{"p50_ms": pct_ms(ok, 50), "p99_ms": pct_ms(ok, 99), "statuses": statuses(shots)},
    }


def open_loop(url: str, body: Path, phases: Sequence[Phase], work: Path) -> list[Shot]:
    """Start each phase's h2load at its time, whatever the others are doing; wait for all."""
    t0, runs = time.time(), []
    for p in phases:
        time.sleep(max(0.0, t0 + p.start - time.time()))
        log = work / f"open-loop-{p.name}.log"
        runs.append((p, log, start(url, body, log, p.requests, p)))
    return [s for p, log, proc in runs for s in finished(proc, log, t0, p)]


# --- figures ---------------------------------------------------------------------------------


def pct_ms(seconds: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile in ms (None for no values)."""
    if not seconds:
        return None
    return round(1e3 * float(np.percentile(seconds, q, method="inverted_cdf")), 1)


def statuses(shots: Sequence[Shot]) -> dict[str, int]:
    """Status -> count ("-1": the request failed on the client's side)."""
    return dict(sorted(Counter(str(s.status) for s in shots).items()))


def latency(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max in ms."""
    return {"p50": pct_ms(seconds, 50), "p99": pct_ms(seconds, 99), "max": pct_ms(seconds, 100)}


def phase_figures(shots: Sequence[Shot], phase: Phase, skip_s: float = 0.0) -> dict[str, Any]:
    """Offered and accepted rates, statuses, latencies and send lag of one phase, past its
    first `skip_s` seconds."""
    sent = sorted(s.sent for s in shots if s.phase == phase.name and s.latency < math.inf)
    lag = [t - phase.start - k / phase.rate for k, t in enumerate(sent)]
    mine = [s for s in shots if s.phase == phase.name and s.sent >= phase.start + skip_s]
    ok = [s.latency for s in mine if s.status == 200]
    shed = [s.latency for s in mine if s.status in SHED]
    seconds = phase.seconds - skip_s
    return {
        "phase": phase.name + (f" after its first {skip_s:g} s" if skip_s else ""),
        **{"offered_per_s": round(phase.rate, 1), "seconds": seconds, "requests": len(mine)},
        **{"statuses": statuses(mine), "accepted_per_s": round(len(ok) / seconds, 1)},
        **{"accepted_latency_ms": latency(ok), "shed_latency_ms": latency(shed)},
        **{"shed_share": round(len(shed) / len(mine), 4) if mine else None},
        "send_lag_ms": latency(lag),
    }


def per_second(shots: Sequence[Shot]) -> list[dict[str, Any]]:
    """Statuses and the p99 of accepted and refused requests for each second, by send time."""
    buckets: dict[int, list[Shot]] = {}
    for s in shots:
        buckets.setdefault(math.floor(s.sent), []).append(s)
    return [
        {
            **{"second": second, "offered": len(mine), "statuses": statuses(mine)},
            "accepted_p99_ms": pct_ms([s.latency for s in mine if s.status == 200], 99),
            "shed_p99_ms": pct_ms([s.latency for s in mine if s.status in SHED], 99),
        }
        for second, mine in sorted(buckets.items())
    ]


def recovery_s(seconds: Sequence[dict[str, Any]], flood_end: float) -> float | None:
    """Seconds from the end of the flood until every later second had every request 200."""
    recovered: float | None = None
    for row in (r for r in seconds if r["second"] >= flood_end):
        if row["statuses"].get("200", 0) != row["offered"]:
            recovered = None
        elif recovered is None:
            recovered = row["second"] - flood_end
    return recovered


def open_loop_figures(shots: Sequence[Shot], phases: Sequence[Phase]) -> dict[str, Any]:
    """Per phase and per second, the settled flood against the bounds, and recovery."""
    per_phase = [phase_figures(shots, p) for p in phases]
    before, _, after = (p["accepted_latency_ms"]["p99"] for p in per_phase)
    settled = phase_figures(shots, phases[1], ONSET_S)
    seconds = per_second(shots)
    p99 = {k: settled[f"{k}_latency_ms"]["p99"] for k in ("accepted", "shed")}
    return {
        **{"phases": per_phase, "flood_after_onset": settled, "per_second": seconds},
        "recovered_after_s": recovery_s(seconds, phases[2].start),
        "p99_after_vs_before": round(after / before, 2) if after and before else None,
        **{f"{k}_p99_within_bound": None if v is None else v <= BOUND_MS for k, v in p99.items()},
        "server_errors": sum(1 for s in shots if s.status >= 500 and s.status != 503),
        "client_failures": sum(1 for s in shots if s.status == -1),
    }


def pss_figures(samples: Sequence[tuple[float, float]], mid_flood: float) -> dict[str, Any]:
    """The tree's memory through the run, and whether it stayed flat from mid-flood on."""
    values, settled = [mb for _, mb in samples], [mb for t, mb in samples if t >= mid_flood]
    drift = (max(settled) - min(settled)) / settled[0] if settled else None
    return {
        "samples": [(round(t, 1), round(mb, 1)) for t, mb in samples],
        **{"first": round(values[0], 1), "last": round(values[-1], 1)},
        "mid_flood": round(settled[0], 1) if settled else None,
        "peak": round(max(values), 1),
        "range_from_mid_flood": None if drift is None else round(drift, 4),
        "flat_from_mid_flood": drift is not None and drift <= FLAT_PSS,
    }


def decision_log_figures(logged: Counter[str], answered: int, given_up: int) -> dict[str, Any]:
    """One record per 200 answered and none twice; a request the client gave up on may still
    have been decided, so the records may exceed the 200s by at most those."""
    records = sum(logged.values())
    return {
        **{"answered_200": answered, "records": records, "distinct_ids": len(logged)},
        "ids_logged_more_than_once": sum(1 for n in logged.values() if n > 1),
        "given_up_at_most": given_up,
        "one_record_per_200": len(logged) == records and 0 <= records - answered <= given_up,
    }


def listen_overflows() -> int:
    """Connection attempts this network namespace dropped at a full accept queue (Linux)."""
    path = Path("/proc/net/netstat")
    lines = path.read_text().splitlines() if path.exists() else []
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, measure, overload, measure again, read the decision log: the figures."""
    tag = args.model or harness.resolve_model_tag()
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        work = Path(tmp)
        body = work / "applicant.json"  # h2load posts one file (the service caches nothing)
        body.write_text(json.dumps(sample_applicants(1, seed=11)[0]))
        # the server on one half of the CPUs, h2load on the other (on one CPU, both share it)
        cpus, busy = sorted(os.sched_getaffinity(0)), harness.machine_busy_cores()
        half = len(cpus) // 2
        server_cpus, generator_cpus = set(cpus[half:]), set(cpus[:half] or cpus)
        os.sched_setaffinity(0, server_cpus)  # the server's processes inherit this at spawn
        port, store = harness.free_port(), f"sqlite:///{work / 'decisions.sqlite'}"
        url, server_log = f"http://127.0.0.1:{port}", args.out / "bench-logs/overload-server.log"
        env = {"CREDIT_RISK_MODEL": tag, "CREDIT_RISK_API_TOKENS": "", STORE_ENV: store}
        env |= dict(kv.split("=", 1) for kv in args.server_env)
        argv = harness.bentoml_serve("service:CreditRiskService", port)
        with harness.running(argv, server_log, url=url, env=env) as server:
            os.sched_setaffinity(0, generator_cpus)  # this process and h2load
            ready_s, pids = server.ready_s, harness.roles(server.root)
            assert ready_s is not None, "running() waits until the server is ready"
            with harness.Window(server.root, every_s=1.0) as window:
                runs = {"warm-up": capacity(url, body, work, 20 * CONNECTIONS)}
                harness.drain(server)
                n = max(10 * CONNECTIONS, int(runs["warm-up"]["requests_per_s"] * args.seconds))
                runs["before"] = capacity(url, body, work, n)
                rate = args.capacity or runs["before"]["requests_per_s"]
                print(f"capacity: {rate:.0f} requests/s at {CONNECTIONS} connections", flush=True)
                harness.drain(server)
                phases = [
                    Phase("before", NORMAL * rate, args.before, 0.0),
                    Phase("flood", args.factor * rate, args.flood, args.before),
                    Phase("after", NORMAL * rate, args.after, args.before + args.flood),
                ]
                mid_flood = window.elapsed() + args.before + args.flood / 2
                overflows = listen_overflows()
                with harness.Window(server.root, every_s=3600) as loop:
                    shots = open_loop(url, body, phases, work)
                overflows = listen_overflows() - overflows
                runs["after"] = capacity(url, body, work, n)
                harness.drain(server)
            decisions = open_store(store)
            logged = Counter(r.decision_id for r in decisions.records())  # committed first
            decisions.close()
            pids_after = harness.roles(server.root)
        os.sched_setaffinity(0, server_cpus | generator_cpus)
    answered = sum(s.status == 200 for s in shots) + sum(r["ok"] for r in runs.values())
    given_up = sum(s.status == -1 for s in shots)
    given_up += sum(r["statuses"].get("-1", 0) for r in runs.values())
    machine = harness.machine_facts([["h2load", "--version"]])
    return {
        **{"model": tag, "machine": machine | {"busy_before_cores": round(busy, 2)}},
        "ready_s": round(ready_s, 2),
        "settings": {
            **{"capacity_connections": CONNECTIONS, "capacity_given": args.capacity},
            **{"factor": args.factor, "normal_fraction": NORMAL, "onset_s": ONSET_S},
            "phases": [asdict(p) for p in phases],
            "max_in_flight_per_worker": int(
                env.get("CREDIT_RISK_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)
            ),
            "p99_bound_ms": BOUND_MS,
        },
        "cpu_during_open_loop": {
            **{"server_cpus": sorted(server_cpus), "generator_cpus": sorted(generator_cpus)},
            "server_cores": round(loop.server_cpu_s / loop.wall_s, 2),
            "generator_cores": round(loop.generator_cpu_s / loop.wall_s, 2),
            **{f"host_{k}_cores": round(loop.host[k], 2) for k in ("idle", "iowait", "steal")},
            "listen_overflows": overflows,
        },
        "server_env": args.server_env,
        **{"capacity_before": runs["before"], "capacity_after": runs["after"]},
        "throughput_after_vs_before": round(
            runs["after"]["requests_per_s"] / runs["before"]["requests_per_s"], 3
        ),
        **open_loop_figures(shots, phases),
        "pss_mb": pss_figures(window.pss, mid_flood),
        "processes": {"before": pids, "after": pids_after, "unchanged": pids == pids_after},
        "decision_log": decision_log_figures(logged, answered, given_up),
    }


def render(r: dict[str, Any]) -> str:
    """reports/overload.md: the setting, capacity, each phase, the checks."""
    s, cpu, m, pss, log = (r[k] for k in ("settings", "cpu_during_open_loop", "machine",
                                          "pss_mb", "decision_log"))  # fmt: skip
    env = f" Server environment: `{' '.join(r['server_env'])}`." if r["server_env"] else ""
    loop = [*r["phases"][:2], r["flood_after_onset"], *r["phases"][2:]]

    def three(lat: dict[str, float | None]) -> str:
        return " / ".join(str(lat[k]) for k in ("p50", "p99", "max"))

    return "\n".join([
        "# Overload", "", f"Command: `{r['command']}`", "",
        f"Model `{r['model']}`; {m['cpu']}, {m['usable_cpus']} CPUs, commit {m['commit']}, "
        f"{m['date']}, {m['versions']['h2load']}; {m['busy_before_cores']} cores busy with "
        f"other work before the start. `bentoml serve service:CreditRiskService` "
        f"({s['max_in_flight_per_worker']} requests in flight per API worker), ready in "
        f"{r['ready_s']} s, on CPUs {cpu['server_cpus']}, h2load on {cpu['generator_cpus']}. "
        f"During the open loop the server used {cpu['server_cores']} cores and h2load "
        f"{cpu['generator_cores']}; the host was idle for {cpu['host_idle_cores']} cores, "
        f"waiting on disk for {cpu['host_iowait_cores']}, taken by its hypervisor for "
        f"{cpu['host_steal_cores']}; the kernel dropped {cpu['listen_overflows']} connection "
        f"attempts at a full accept queue.{env}",
        "", "## Capacity (h2load, 64 keep-alive connections, closed loop)", "",
        *harness.md_table(["when", "requests/s", "p50 ms", "p99 ms", "statuses"], [
            [f"{when} the flood", f"{c['requests_per_s']:.0f}", c["p50_ms"], c["p99_ms"],
             c["statuses"]] for when in ("before", "after") if (c := r[f"capacity_{when}"])]),
        "", f"Throughput after / before: **{r['throughput_after_vs_before']:.2f}**.", "",
        f"## Open loop: {s['normal_fraction']:g}x, {s['factor']:g}x, {s['normal_fraction']:g}x "
        "the capacity", "",
        "One connection per request, opened on a timer; latency counts from the request's send, "
        "and the send lag is how far the sends fell behind the schedule.", "",
        *harness.md_table(
            ["phase", "offered/s", "s", "requests", "statuses", "accepted/s",
             "accepted p50 / p99 / max ms", "shed", "shed p50 / p99 / max ms", "send lag ms"],
            [[p["phase"], f"{p['offered_per_s']:.0f}", f"{p['seconds']:g}", p["requests"],
              ", ".join(f"{k}: {v}" for k, v in p["statuses"].items()),
              f"{p['accepted_per_s']:.0f}", three(p["accepted_latency_ms"]),
              f"{p['shed_share'] or 0:.1%}", three(p["shed_latency_ms"]),
              three(p["send_lag_ms"])] for p in loop]),
        "", "## Checks", "",
        f"- p99 once the flood has settled (after its first {s['onset_s']:g} s) within "
        f"{s['p99_bound_ms']} ms, the runner's admission bound: accepted "
        f"**{r['accepted_p99_within_bound']}**, refusals **{r['shed_p99_within_bound']}**",
        f"- everything answered 200 again **{r['recovered_after_s']} s** after the flood (None: "
        f"not within the run); normal load's p99 after / before: **{r['p99_after_vs_before']}**",
        f"- 5xx other than 503: **{r['server_errors']}**; requests never answered (no connection, "
        f"or no answer within {REQUEST_TIMEOUT_S} s): {r['client_failures']}",
        f"- server processes unchanged (none crashed or restarted): "
        f"**{r['processes']['unchanged']}**",
        f"- PSS of the server tree (MB): {pss['first']} first, {pss['mid_flood']} mid-flood, "
        f"{pss['peak']} peak, {pss['last']} last ({len(pss['samples'])} samples, one a second); "
        f"flat from mid-flood on (within {FLAT_PSS:.0%}): **{pss['flat_from_mid_flood']}** "
        f"({pss['range_from_mid_flood'] or 0:.1%})",
        f"- decision log: {log['records']} records, {log['distinct_ids']} distinct, for "
        f"{log['answered_200']} answers 200 (and at most {log['given_up_at_most']} requests the "
        f"client gave up on): one record per 200, none twice: **{log['one_record_per_200']}**",
        "",
    ])  # fmt: skip


OPTIONS: Final = {
    "--model": (str, None, "model tag (default: credit_risk:latest)"),
    "--capacity": (float, None, "requests/s (default: measure it)"),
    "--factor": (float, 4.0, "flood rate / capacity"),
    "--seconds": (float, 10.0, "per capacity run"),
    "--before": (float, 10.0, "seconds of normal load"),
    "--flood": (float, 30.0, "seconds of overload"),
    "--after": (float, 20.0, "seconds of normal load"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (also how the short test configures a run)."""
    parser = harness.cli(__doc__, OPTIONS)
    example = "extra server environment, e.g. CREDIT_RISK_MAX_IN_FLIGHT=128 (repeatable)"
    parser.add_argument("--server-env", action="append", default=[], help=example)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (`make overload`)."""
    args = parse_args(argv)
    if not harness.have("h2load", "make overload", "make h2load (Debian's nghttp2-client)"):
        return 2
    result = run(args)
    result["command"] = args.command or harness.command_line("load_tests.overload", argv)
    harness.write_report(args.out, "overload", result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
