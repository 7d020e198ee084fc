"""How connections spread over the API workers: wrk rounds at 64 connections.

    python -m load_tests.connection_spread [--rounds 3] [--seconds 10] [--connections 64]

Each round starts a fresh server (which worker takes the connections is decided at their
start), drives /classify with wrk and prints one JSON line: requests/s, the client connections
each API worker holds halfway through the round, and each worker's share of the API workers'
CPU time in it. Needs wrk and a model in the store (`make train`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

from load_tests import bench


def api_workers(root: psutil.Process) -> list[psutil.Process]:
    """The server's API workers (not the runner, not the supervisor)."""
    return [
        p
        for p in bench.process_tree(root)
        if "credit_risk_service" in " ".join(p.cmdline()) and p.pid != root.pid
    ]


def clients(workers: list[psutil.Process], port: int) -> list[int]:
    """Client connections each worker holds on the service's port, now."""
    return [
        sum(
            1
            for c in w.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
        )
        for w in workers
    ]


def one_round(
    server: bench.Server, bodies: Path, workdir: Path, seconds: int, connections: int
) -> dict[str, object]:
    """Start the server, drive it, and return requests/s and each worker's CPU share."""
    port = bench.free_port()
    url = f"http://127.0.0.1:{port}"
    with bench.running(server, port, workdir / "server.log") as (root, started):
        bench.wait_ready(url + server.ready_path, root, started, workdir / "server.log")
        workers = api_workers(root)
        before = [sum(w.cpu_times()[:2]) for w in workers]
        held: list[int] = []
        counting = threading.Timer(seconds / 2, lambda: held.extend(clients(workers, port)))
        counting.start()
        summary = bench.run_wrk(url, bodies, "/classify", connections, seconds)
        counting.join()
        used = [sum(w.cpu_times()[:2]) - b for w, b in zip(workers, before, strict=True)]
    total = sum(used) or 1.0
    return {
        "requests_per_s": round(float(summary["requests"]) / seconds),
        "worker_connections": held,
        "worker_cpu_share": [round(u / total, 2) for u in used],
        "worker_cpu_s": [round(u, 1) for u in used],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print one JSON line per round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    tag = bench.resolve_model_tag()
    server = bench.ours("ours", "ours", batching=True, loads=())
    server = bench.Server(**{**server.__dict__, "env": {**server.env, "CREDIT_RISK_MODEL": tag}})
    with tempfile.TemporaryDirectory(prefix="spread-") as tmp:
        workdir = Path(tmp)
        bodies = bench.write_load_bodies(workdir)["single"]
        for number in range(1, args.rounds + 1):
            result = one_round(server, bodies, workdir, args.seconds, args.connections)
            print(json.dumps({"round": number, "connections": args.connections, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
