"""Side-by-side benchmark under wrk: our service (batching on and off, a challenger in shadow,
decisions on SQLite and on PostgreSQL), the floor, the Flask baseline, and optionally ours at an
earlier commit (`--before COMMIT`, served from a temporary worktree). The method and the figures:
docs/performance.md, "The benchmark". Results: `<out>/benchmark.{json,md,png}`.

    python -m load_tests.bench [--rounds 2] [--duration 10] [--out reports]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import httpx
from pydantic import TypeAdapter

from credit_risk.decision_store import STORE_ENV
from credit_risk.schema import Decision
from load_tests import harness, postgres
from load_tests.applicants import sample_applicants, write_bodies

WRK_SCRIPT: Final = Path(__file__).resolve().parent / "wrk_bodies.lua"
BATCH_SIZE: Final = 1000
"""Applicants per /classify_batch request: the API's largest batch."""
BATCH_BODIES: Final = 12
"""Distinct 1,000-applicant bodies (~0.4 MB each) wrk rotates through, beside 2,000 distinct
one-applicant bodies (twice the data set): never one fixed payload."""
PERCENTILES: Final = ("p50", "p90", "p99", "p999", "max")
CHECK_APPLICANTS: Final = 40
SAME_MODEL: Final = 1e-9
"""Largest |p_ours - p_baseline| accepted as the same model (float64 round-off)."""
WRK_TIMEOUT_S: Final = 5
"""wrk's per-request timeout, shorter than a run: a slower answer is a timeout, not a latency."""
OURS, SHADOW, NO_BATCHING = "ours-batching", "ours-shadow", "ours-no-batching"
POSTGRES, BEFORE, FLOOR, BASELINE = "ours-postgres", "ours-before", "floor", "flask-gunicorn"
DECISIONS: Final = TypeAdapter(list[Decision])


class Load(NamedTuple):
    """What a configuration is driven with: a load name, a path, a set of concurrencies."""

    name: str
    path: str
    concurrency: tuple[int, ...]


@dataclass(frozen=True)
class Config:
    """One configuration: how to start it, how to know it is ready, the loads it gets."""

    key: str
    label: str
    argv: tuple[str, ...]  # "{port}" filled in per start
    loads: tuple[Load, ...]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    check_path: str = "/classify"
    ours: bool = True
    scores_model: bool = True
    """False for the floor: its constant answers are checked against the schema only."""
    cwd: Path | None = None
    """Where the server runs from (the worktree of `--before`), else the repository."""


def configs(
    concurrency: tuple[int, ...], batch_concurrency: tuple[int, ...], before: Path | None = None
) -> list[Config]:
    """The configurations under test, in their first-round order."""
    bindir, port = Path(sys.executable).parent, "127.0.0.1:{port}"
    serve = tuple(harness.bentoml_serve("service:CreditRiskService", "{port}", None))
    gunicorn = (str(bindir / "gunicorn"), "--no-control-socket", "-w", "2", "--bind", port)
    uvicorn = (str(bindir / "uvicorn"), "load_tests.floor.app:app", "--workers", "2")
    uvicorn += ("--no-access-log", "--log-level", "warning", "--host", "127.0.0.1")
    classify = Load("classify", "/classify", concurrency)
    batch = Load("classify_batch", "/classify_batch", batch_concurrency)
    one_and_64, at_64 = Load("classify", "/classify", (1, 64)), Load("classify", "/classify", (64,))
    # ours with the token list empty: measure the service, not a 401 from its authentication
    table = [
        (OURS, "ours, adaptive batching, decisions on SQLite", "1", (classify, batch)),
        (SHADOW, "ours, adaptive batching, challenger in shadow", "1", (at_64,)),
        (NO_BATCHING, "ours, batching off", "0", (one_and_64,)),
        (POSTGRES, "ours, adaptive batching, decisions on PostgreSQL", "1", (at_64,)),
    ]
    chosen = [
        Config(key, label, serve, loads, {"CREDIT_RISK_API_TOKENS": "", "CREDIT_RISK_BATCHING": on})
        for key, label, on, loads in table
    ]
    floor = "floor: Starlette + uvicorn, 2 workers, validation only"
    uvicorn += ("--port", "{port}")
    chosen.append(Config(FLOOR, floor, uvicorn, (classify,), ours=False, scores_model=False))
    flask = (Load("classify", "/predict", concurrency),)
    gunicorn += ("load_tests.baseline.app:app",)
    label = "Flask + gunicorn, 2 sync workers"
    chosen.append(Config(BASELINE, label, gunicorn, flask, {}, "/health", "/predict", ours=False))
    if before is not None:
        label = f"ours at {before.name.rsplit('-', 1)[-1]} (before)"
        env = {"CREDIT_RISK_API_TOKENS": ""}
        chosen.insert(1, Config(BEFORE, label, serve, (one_and_64, batch), env, cwd=before))
    return chosen


def run_wrk(url: str, bodies: Path, path: str, connections: int, seconds: int) -> dict[str, Any]:
    """One bounded wrk run on one thread (a second would compete with the server)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s"]
    argv += ["--latency", "-s", str(WRK_SCRIPT), url, "--", str(bodies), path]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        msg = f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
        raise RuntimeError(msg)
    summary: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    return summary


def batch_bodies(path: Path, seed: int = 0) -> Path:
    """BATCH_BODIES distinct /classify_batch bodies of BATCH_SIZE applicants, for wrk."""
    batches = [sample_applicants(BATCH_SIZE, seed=seed + i) for i in range(BATCH_BODIES)]
    return write_bodies(path, batches)


def check_answers(base: str, config: Config, applicants: list[Any]) -> tuple[list[float], Any]:
    """Score known applicants one by one (and as one batch for ours): every answer must validate
    and come from one model. The probabilities and the version (none for the floor)."""
    with httpx.Client(base_url=base, timeout=30.0) as client:
        answers = [client.post(config.check_path, json=a) for a in applicants]
        if bad := [r for r in answers if r.status_code != 200]:
            msg = f"{config.check_path} answered {bad[0].status_code}: {bad[0].text[:300]}"
            raise RuntimeError(msg)
        current = config.key != BEFORE  # an earlier commit answered an earlier schema
        if current and (config.ours or not config.scores_model):  # a ValidationError if not
            DECISIONS.validate_json(b"[" + b",".join(r.content for r in answers) + b"]")
        bodies = [r.json() for r in answers]
        probabilities = [float(b["probability_of_default"]) for b in bodies]
        if config.ours:
            batch = client.post("/classify_batch", json=applicants).json()
            if current:
                DECISIONS.validate_python(batch)
            ps = [float(d["probability_of_default"]) for d in batch]
            pairs = zip(ps, probabilities, strict=True)
            if len(ps) != len(applicants) or max(abs(a - b) for a, b in pairs) > SAME_MODEL:
                raise RuntimeError("/classify_batch disagrees with /classify")
    if len(versions := {str(b["model_version"]) for b in bodies}) != 1:
        raise RuntimeError(f"answers came from several models: {sorted(versions)}")
    return (probabilities, versions.pop()) if config.scores_model else ([], None)


@dataclass(frozen=True)
class Plan:
    """What every start in a run shares: its settings, the pinned model, bodies and checks."""

    args: argparse.Namespace
    tag: str
    bodies: dict[bool, Path]
    """wrk's body file, by whether the load is a batch."""
    check: list[dict[str, Any]]
    work: Path
    """Scratch space of the run: each start's decision records go here, not the user's home."""


def measure(
    server: harness.Server, config: Config, load: Load, connections: int, plan: Plan
) -> dict[str, Any]:
    """Drain, warm up, drain, then one measured wrk run with the server's tree sampled (draining
    matters after overload: requests wrk abandons stay queued in the server)."""
    batch = load.name == "classify_batch"  # each request carries BATCH_SIZE applicants
    args, bodies = plan.args, plan.bodies[batch]
    harness.drain(server, config.ready_path)
    if args.warmup > 0:
        run_wrk(server.url, bodies, load.path, connections, args.warmup)
        harness.drain(server, config.ready_path)
    with harness.Window(server.root) as window:
        s = run_wrk(server.url, bodies, load.path, connections, args.duration)
    requests, lat, wall = int(s["requests"]), s["latency_us"], s["duration_us"] / 1e6
    answered = requests - int(s["errors"]["status"])  # a refusal (429) is not throughput
    return {
        **{"concurrency": connections, "duration_s": wall, "requests": requests},
        "requests_per_s": answered / wall,
        "applicants_per_s": answered * (BATCH_SIZE if batch else 1) / wall,
        **{f"{k}_ms": lat[k] / 1e3 if requests else None for k in PERCENTILES},
        "errors": {k: int(v) for k, v in s["errors"].items()},
        "server_cpu_cores": window.server_cpu_s / window.wall_s,
        "server_cpu_ms_per_request": 1e3 * window.server_cpu_s / requests if requests else None,
        "generator_cpu_cores": window.generator_cpu_s / window.wall_s,
        "machine_busy_cores": window.host["busy"],
        "pss_peak_mb": max(mb for _, mb in window.pss),  # sampled at least once
    }


def records_env(config: Config, where: Path) -> dict[str, str]:
    """Each start of ours decides into a store (or, `--before` a commit that had none, a
    decision log) of its own under `where`; PostgreSQL is the run's server (`env` has it)."""
    if not config.ours or STORE_ENV in config.env:
        return {}
    if config.key == BEFORE:
        log = {"monitoring": {"options": {"log_path": str(where)}}}
        overrides = json.dumps({"services": {"credit_risk_service": log}})
        return {"BENTOML_CONFIG_OVERRIDES": overrides, "PYTHONPATH": str(config.cwd)}
    where.mkdir(parents=True, exist_ok=True)
    return {STORE_ENV: f"sqlite:///{where / 'decisions.sqlite'}"}


def start_and_drive(round_: int, config: Config, plan: Plan) -> tuple[dict[str, Any], list[Any]]:
    """One configuration in one round: start it, check it, measure every load at every
    concurrency. A failure ends its measurements and is recorded in the start, not raised."""
    print(f"round {round_}: {config.label}", flush=True)
    start: dict[str, Any] = {"round": round_, "server": config.key, "ready_s": None}
    start |= {"first_answer_s": None, "pss_idle_mb": None, "processes": 0}
    start |= {"model_version": None, "probabilities": [], "failure": None}
    start["busy_before_cores"] = harness.machine_busy_cores()
    points: list[dict[str, Any]] = []
    port = harness.free_port()
    argv, url = [a.format(port=port) for a in config.argv], f"http://127.0.0.1:{port}"
    name = f"{config.key}-round{round_}"
    log, env = plan.args.out / "bench-logs" / f"{name}.log", records_env(config, plan.work / name)
    cwd = config.cwd or harness.REPO
    with harness.running(argv, log, url=url, env=config.env | env, ready_path=None, cwd=cwd) as srv:
        try:
            start["ready_s"] = harness.wait_ready(srv, config.ready_path, 120.0)
            start["probabilities"], start["model_version"] = check_answers(url, config, plan.check)
            start["first_answer_s"] = time.perf_counter() - srv.started
            if config.scores_model and start["model_version"] != plan.tag:
                raise RuntimeError(f"serves {start['model_version']}, expected {plan.tag}")
            time.sleep(1.0)  # let start-up work settle before reading memory at rest
            start["pss_idle_mb"] = harness.pss_mb(srv.root)
            start["processes"] = len(harness.processes(srv.root))
            print(f"  ready in {start['ready_s']:.1f} s, {start['processes']} processes, "
                  f"{start['pss_idle_mb']:.0f} MB PSS idle")  # fmt: skip
            for load in config.loads:
                for connections in load.concurrency:
                    p = {"round": round_, "server": config.key, "load": load.name}
                    points.append(p := p | measure(srv, config, load, connections, plan))
                    print(f"  {load.name:>14} c={connections:<4} {p['requests_per_s']:8.1f} req/s"
                          f"  p99 {p['p99_ms'] or 0:7.1f} ms  errors {sum(p['errors'].values())}",
                          flush=True)  # fmt: skip
        except (RuntimeError, TimeoutError, httpx.HTTPError, ValueError) as exc:
            start["failure"] = str(exc).splitlines()[0]
            print(f"  FAILED: {start['failure']} (log: {log})", flush=True)
    return start, points


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every round, every configuration, every load; the raw results."""
    tag = args.model or harness.resolve_model_tag()
    starts, points, began = [], [], time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        before = stack.enter_context(worktree(args.before, work)) if args.before else None
        chosen = [
            c
            for c in configs(args.concurrency, args.batch_concurrency, before)
            if c.key in args.only or c.key == BEFORE
        ]
        if any(c.key == POSTGRES for c in chosen) and not postgres.BIN_DIRS:
            print(f"skipping {POSTGRES}: {postgres.MISSING}", flush=True)
            chosen = [c for c in chosen if c.key != POSTGRES]
        for c in chosen:  # every configuration serves the same model; only one row a challenger
            challenger = (args.challenger or tag) if c.key == SHADOW else "none"
            c.env.update({"CREDIT_RISK_MODEL": tag, "CREDIT_RISK_CHALLENGER": challenger})
            if c.key == POSTGRES:  # one local PostgreSQL server for the whole run
                c.env[STORE_ENV] = stack.enter_context(postgres.postgres_server()).create_database()
        runs = args.rounds * sum(len(load.concurrency) for c in chosen for load in c.loads)
        print(f"schedule: {runs} runs x ({args.warmup} s warm-up + {args.duration} s) = "
              f"{runs * (args.warmup + args.duration) / 60:.1f} min of load, plus "
              f"{args.rounds * len(chosen)} server starts", flush=True)  # fmt: skip
        single = write_bodies(work / "single.jsonl", sample_applicants(2000, seed=1))
        bodies = {False: single, True: batch_bodies(work / "batch.jsonl", seed=100)}
        plan = Plan(args, tag, bodies, sample_applicants(CHECK_APPLICANTS, seed=7), work)
        for round_ in range(1, args.rounds + 1):
            for config in chosen if round_ % 2 else chosen[::-1]:
                start, measured = start_and_drive(round_, config, plan)
                starts.append(start)
                points += measured
    settings = {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup}
    settings |= {"concurrency": list(args.concurrency), "batch_size": BATCH_SIZE}
    settings |= {"batch_concurrency": list(args.batch_concurrency), "wrk_timeout_s": WRK_TIMEOUT_S}
    settings["generator"] = "wrk, 1 thread, keep-alive connections, closed loop"
    settings["wall_s"] = time.perf_counter() - began
    return {
        **{"model": tag, "machine": harness.machine_facts([["wrk", "--version"]])},
        "settings": settings,
        "servers": [{"key": c.key, "label": c.label, "argv": list(c.argv)} for c in chosen],
        **{"starts": starts, "points": points},
    }


@contextlib.contextmanager
def worktree(commit: str, work: Path) -> Iterator[Path]:
    """The repository at `commit`, checked out under `work` for as long as the block runs."""
    git = ["git", "-C", str(harness.REPO)]
    sha = subprocess.check_output([*git, "rev-parse", "--short", commit], text=True).strip()
    path = work / f"before-{sha}"
    subprocess.run(
        [*git, "worktree", "add", "--detach", str(path), sha], capture_output=True, check=True
    )
    try:
        yield path
    finally:
        remove = [*git, "worktree", "remove", "--force", str(path)]
        subprocess.run(remove, capture_output=True, check=False)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


OPTIONS: Final = {
    "--rounds": (int, 2, "interleaved repeats"),
    "--duration": (int, 10, "seconds per measured run"),
    "--warmup": (int, 2, "seconds of warm-up (0: none)"),
    # 128: what our service admits at once by default (2 API workers x 64 in flight); past
    # that it sheds by design, which `make overload` measures
    "--concurrency": (_ints, (1, 16, 64, 128), "connections of /classify, comma-separated"),
    "--batch-concurrency": (_ints, (1, 4, 16), "connections of /classify_batch"),
    "--before": (str, None, "also serve ours at this commit (git), for before/after"),
    "--model": (str, None, "model tag to serve (default: credit_risk:latest)"),
    "--challenger": (str, None, f"of the {SHADOW} row (default: the served model)"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (also how the short test configures a run)."""
    parser, keys = harness.cli(__doc__, OPTIONS), [c.key for c in configs((), ())]
    parser.add_argument("--only", nargs="*", default=keys, choices=keys, help="configurations")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (`make bench`)."""
    args = parse_args(argv)
    if not harness.have("wrk", "make bench", "make wrk (Debian's wrk) or brew install wrk (macOS)"):
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # servers stopped
    results = run(args)
    results["command"] = args.command or harness.command_line("load_tests.bench", argv)
    from load_tests.report import write_report  # noqa: PLC0415 (matplotlib is slow to import)

    write_report(results, args.out)
    return 1 if any(s["failure"] for s in results["starts"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
