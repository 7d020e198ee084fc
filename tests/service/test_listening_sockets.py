"""Once the server is ready, every API worker accepts on a listening socket of its own and the
supervisor's has stopped (credit_risk/serving/workarounds/listening_socket.py): what
`harness.wait_ready` waits for before a test or a benchmark sends load, and what spreads new
connections over the workers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import psutil
import pytest

from load_tests import harness
from tests.conftest import Server

pytestmark = pytest.mark.integration

CONNECTIONS = 64
"""Idle connections opened at once: the kernel hashes each to one worker's socket."""


def _listening(pid: int, port: int) -> bool:
    sockets = psutil.Process(pid).net_connections(kind="tcp")
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def _held_by(workers: list[int], ports: set[int]) -> dict[int, int]:
    """Worker PID -> how many of the client `ports` it holds a connection from."""
    held = {}
    for pid in workers:
        conns = psutil.Process(pid).net_connections(kind="tcp")
        held[pid] = sum(1 for c in conns if c.raddr and c.raddr.port in ports)
    return held


def test_every_api_worker_listens_on_a_socket_of_its_own_once_ready(server: Server) -> None:
    port = urlsplit(server.url).port
    assert port is not None
    workers = harness.api_workers(server.root)
    assert len(workers) >= 2, "the service runs several API workers"
    listening = {p.pid for p in harness.processes(server.root) if _listening(p.pid, port)}
    assert listening == set(workers), "only the API workers listen, each on its own socket"
    assert harness.accepting(server)


def test_connections_opened_at_once_reach_every_api_worker(server: Server) -> None:
    parts = urlsplit(server.url)
    workers = harness.api_workers(server.root)
    clients = [socket.create_connection((parts.hostname, parts.port)) for _ in range(CONNECTIONS)]
    try:
        ports = {c.getsockname()[1] for c in clients}
        harness.wait_for(
            lambda: sum(_held_by(workers, ports).values()) == CONNECTIONS,
            "the workers accepted every connection",
        )
        held = _held_by(workers, ports)
    finally:
        for c in clients:
            c.close()
    print(f"\n{CONNECTIONS} connections opened at once, held per API worker: {held}")
    assert all(held.values()), held
