"""Start-up: from spawning `bentoml serve` to the first 200 on /classify, and where it goes
(the method: docs/performance.md, "Start-up"). Results: `<out>/startup.{md,json}`.

    python -m load_tests.startup [--runs 5] [--out reports]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from credit_risk.model_store import DEFAULT_TAG, MODEL_ENV
from credit_risk.schema import example_applicant
from load_tests import harness

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


def one_start(log: Path) -> dict[str, float]:
    """Spawn a server; seconds to its first worker (the process tree watched every 10 ms) and to
    the first 200 on /classify (one applicant every 20 ms), and its processes' CPU seconds then."""
    port = harness.free_port()
    argv, url = harness.bentoml_serve("service:CreditRiskService", port), f"http://127.0.0.1:{port}"
    with (
        harness.running(argv, log, url=url, ready_path=None) as server,
        httpx.Client(timeout=5) as client,
    ):
        spawned: list[float] = []

        def first_worker() -> None:
            while server.process.poll() is None and not harness.processes(server.root)[1:]:
                time.sleep(0.01)
            spawned.append(time.perf_counter() - server.started)

        def answered() -> bool:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                return client.post(f"{url}/classify", json=example_applicant()).is_success
            return False

        threading.Thread(target=first_worker, daemon=True).start()
        harness.wait_for(answered, "the server answers /classify", harness.READY_TIMEOUT_S)
        ready = time.perf_counter() - server.started
        harness.wait_for(lambda: spawned, "the supervisor's first worker was seen", 5)
        cpu_s = sum(harness.cpu_seconds(server.root).values())
        return {"workers_spawned_s": spawned[0], "ready_s": ready, "cpu_s": cpu_s}


def piece_s(code: str) -> float:
    """Seconds a fresh interpreter takes for `code` (or the figure `code` prints)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=harness.REPO, env={**os.environ, **harness.QUIET},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    printed = out.stdout.strip().splitlines()
    return float(printed[-1]) if printed else time.perf_counter() - start


def measure(runs: int) -> dict[str, Any]:
    """Every figure of the report, medians over `runs`."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as logs:
        starts = [one_start(Path(logs) / f"server-{i}.log") for i in range(runs)]
    pieces = {k: statistics.median(piece_s(c) for _ in range(runs)) for k, c in PIECES.items()}

    def median(key: str) -> float:
        return round(statistics.median(s[key] for s in starts), 2)

    return {
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ready_s": [round(s["ready_s"], 2) for s in starts],
        "ready_median_s": median("ready_s"),
        "cpu_median_s": median("cpu_s"),
        "workers_spawned_median_s": median("workers_spawned_s"),
        "pieces_median_s": {k: round(v, 2) for k, v in pieces.items()},
    }


def render(result: dict[str, Any], command: str) -> str:
    """The Markdown report."""
    return "\n".join([
        "# Start-up", "",
        f"Command: `{command}`, {result['runs']} runs, {result['cpus']} CPUs, load average (1, 5, "
        f"15 min) {result['load_average_before']} before and {result['load_average_after']} after.",
        "",
        *harness.md_table(["From spawning `bentoml serve`", "median s"], [
            ["to its first worker (the supervisor: CLI, service, model proof, circus)",
             f"{result['workers_spawned_median_s']:.2f}"],
            ["to the first 200 on /classify (ready)", f"{result['ready_median_s']:.2f}"],
            ["CPU time of all the server's processes by then", f"{result['cpu_median_s']:.2f}"],
        ]),
        "", f"Every run's ready time: {', '.join(f'{s:.2f}' for s in result['ready_s'])} s.", "",
        *harness.md_table(["Piece, in a fresh interpreter", "median s"],
                          [[k, f"{v:.2f}"] for k, v in result["pieces_median_s"].items()]),
        "",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and write the reports (`make startup`)."""
    args = harness.cli(__doc__, {"--runs": (int, 5, "server starts")}).parse_args(argv)
    result = measure(args.runs)
    command = args.command or harness.command_line("load_tests.startup", argv)
    harness.write_report(args.out, "startup", result, render(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
