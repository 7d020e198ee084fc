"""How connections spread over the API workers: per round, a fresh server (which worker takes the
connections is decided at their start) driven by wrk on /classify; one JSON line: requests/s,
the client connections each API worker holds halfway through, each one's share of their CPU
time (docs/reliability.md). Needs wrk and a model in the store (`make train`).

    python -m load_tests.connection_spread [--rounds 3] [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

from credit_risk.decision_store import STORE_ENV
from load_tests import harness
from load_tests.applicants import sample_applicants, write_bodies
from load_tests.bench import run_wrk


def one_round(args: argparse.Namespace, env: dict[str, str], work: Path) -> dict[str, object]:
    """Start the server, drive it, and return requests/s and each worker's connections and CPU."""
    port = harness.free_port()
    argv, url = harness.bentoml_serve("service:CreditRiskService", port), f"http://127.0.0.1:{port}"
    with harness.running(argv, work / "server.log", url=url, env=env) as server:
        workers = [psutil.Process(pid) for pid in harness.api_workers(server.root)]
        before = [sum(w.cpu_times()[:2]) for w in workers]
        held: list[int] = []  # client connections each worker holds halfway through

        def count() -> None:
            mine = psutil.CONN_ESTABLISHED, port
            for conns in (w.net_connections(kind="tcp") for w in workers):
                held.append(sum(1 for c in conns if c.laddr and (c.status, c.laddr.port) == mine))

        (counting := threading.Timer(args.seconds / 2, count)).start()
        summary = run_wrk(url, work / "single.jsonl", "/classify", args.connections, args.seconds)
        counting.join()
        used = [sum(w.cpu_times()[:2]) - b for w, b in zip(workers, before, strict=True)]
    return {
        "requests_per_s": round(float(summary["requests"]) / args.seconds),
        "worker_connections": held,
        "worker_cpu_share": [round(u / (sum(used) or 1.0), 2) for u in used],
        "worker_cpu_s": [round(u, 1) for u in used],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print one JSON line per round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    env = {"CREDIT_RISK_MODEL": harness.resolve_model_tag(), "CREDIT_RISK_API_TOKENS": ""}
    with tempfile.TemporaryDirectory(prefix="spread-") as tmp:
        work = Path(tmp)
        write_bodies(work / "single.jsonl", sample_applicants(2000, seed=1))
        env |= {"CREDIT_RISK_CHALLENGER": "none", STORE_ENV: f"sqlite:///{work / 'd.sqlite'}"}
        for number in range(1, args.rounds + 1):
            result = one_round(args, env, work)
            print(json.dumps({"round": number, "connections": args.connections, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
