"""Start-up: from spawning `bentoml serve` to the first 200 on /classify, and where it goes.

    python -m load_tests.startup [--runs 5] [--out reports]

Each run spawns the server as `make serve` does and posts one applicant to /classify every
20 ms until it is answered 200 (ready). Meanwhile the process tree is sampled every 10 ms, so
each run also gives when the workers were spawned (the supervisor's share: importing BentoML's
CLI and the service, proving the model loads, starting circus) and the rest (the workers
importing and initialising, the API reaching its runner). Separately, each piece a process
repeats is timed in a fresh interpreter: the interpreter, `import bentoml`, `import service`
and loading the served model. The load average is recorded beside the figures: on a shared
host the figures are only comparable at similar load. Results go to `<out>/startup.md` and
`<out>/startup.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

import httpx
import psutil

from credit_risk.model_store import DEFAULT_TAG, MODEL_ENV
from credit_risk.schema import example_applicant

ROOT: Final = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S: Final = 120.0
POLL_S: Final = 0.02
PIECES: Final = {
    "interpreter": "pass",
    "import bentoml": "import bentoml",
    "import service": "import service",
    "load the served model": (
        "import os, time; from credit_risk.model_store import load_serving_model; "
        f"t = time.perf_counter(); load_serving_model(os.environ.get({MODEL_ENV!r}) or "
        f"{DEFAULT_TAG!r}); print(time.perf_counter() - t)"
    ),
}
"""What each server process repeats, timed in a fresh interpreter (the model load from inside,
without its imports)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_start(home: Path) -> dict[str, float]:
    """Spawn a server, wait for the first 200 on /classify; seconds to workers and to ready."""
    with tempfile.TemporaryFile() as log:
        return _timed_start(home, log)


def _timed_start(home: Path, log: IO[bytes]) -> dict[str, float]:
    port = _free_port()
    start = time.monotonic()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bentoml", "serve", "service:CreditRiskService"),
            *("--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)),
        ],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    spawned: list[float] = []
    watcher = threading.Thread(target=_first_child, args=(process, start, spawned), daemon=True)
    watcher.start()
    try:
        with httpx.Client(timeout=5) as client:
            while time.monotonic() - start < READY_TIMEOUT_S:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited:\n{log.read().decode()[-3000:]}")
                try:
                    answer = client.post(
                        f"http://127.0.0.1:{port}/classify", json=example_applicant()
                    )
                    if answer.status_code == 200:
                        ready = time.monotonic() - start
                        watcher.join(timeout=1)
                        return {
                            "workers_spawned_s": spawned[0],
                            "ready_s": ready,
                            "cpu_s": _tree_cpu_s(process.pid),
                        }
                except httpx.TransportError:
                    pass
                time.sleep(POLL_S)
        raise TimeoutError(f"not ready after {READY_TIMEOUT_S} s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _first_child(process: subprocess.Popen[bytes], start: float, spawned: list[float]) -> None:
    """Append when the supervisor spawned its first worker (sampled every 10 ms)."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        if root.children():
            spawned.append(time.monotonic() - start)
            return
        time.sleep(0.01)


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds the server's processes have used so far: the start's cost on any host,
    where the wall-clock time depends on what else the cores are doing."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def piece_s(code: str, home: Path) -> float:
    """Seconds a fresh interpreter takes for `code` (or the figure `code` prints)."""
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    elapsed = time.monotonic() - start
    printed = out.stdout.strip().splitlines()
    return float(printed[-1]) if printed else elapsed


def measure(runs: int, home: Path) -> dict[str, Any]:
    """Every figure of the report, medians over `runs`."""
    load_before = os.getloadavg()
    starts = [one_start(home) for _ in range(runs)]
    pieces = {
        name: statistics.median(piece_s(code, home) for _ in range(runs))
        for name, code in PIECES.items()
    }
    return {
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ready_s": [round(s["ready_s"], 2) for s in starts],
        "ready_median_s": round(statistics.median(s["ready_s"] for s in starts), 2),
        "cpu_median_s": round(statistics.median(s["cpu_s"] for s in starts), 2),
        "workers_spawned_median_s": round(
            statistics.median(s["workers_spawned_s"] for s in starts), 2
        ),
        "pieces_median_s": {k: round(v, 2) for k, v in pieces.items()},
    }


def render(result: dict[str, Any], command: str) -> str:
    """The Markdown report."""
    pieces = "\n".join(f"| {k} | {v:.2f} |" for k, v in result["pieces_median_s"].items())
    spawned = result["workers_spawned_median_s"]
    return f"""# Start-up

Command: `{command}`, {result["runs"]} runs, {result["cpus"]} CPUs, load average (1, 5, 15 min)
{result["load_average_before"]} before and {result["load_average_after"]} after.

| From spawning `bentoml serve` | median s |
|---|---|
| to its first worker (the supervisor: CLI, service, model proof, circus) | {spawned:.2f} |
| to the first 200 on /classify (ready) | {result["ready_median_s"]:.2f} |
| CPU time of all the server's processes by then | {result["cpu_median_s"]:.2f} |

Every run's ready time: {", ".join(f"{s:.2f}" for s in result["ready_s"])} s.

| Piece, in a fresh interpreter | median s |
|---|---|
{pieces}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--command", default="python -m load_tests.startup")
    args = parser.parse_args(argv)
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    result = measure(args.runs, home)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "startup.md").write_text(render(result, args.command))
    print(render(result, args.command))
    print(f"wrote {args.out / 'startup.md'} ({shlex.join(sys.argv)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
