"""Once the server is ready, every API worker listens on a socket of its own and the
supervisor's has stopped (credit_risk/serving/workarounds/listening_socket.py): what
`harness.wait_ready` waits for before a test or a benchmark sends load, and what spreads new
connections over the workers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import pytest

from load_tests import harness
from tests.conftest import Server, serving

pytestmark = pytest.mark.integration

CONNECTIONS = 64
"""Idle connections opened at once: the kernel hashes each to one worker's socket."""


@pytest.fixture(scope="module")
def fresh(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own, so the first test looks right after `wait_ready`."""
    with serving(tmp_path_factory.mktemp("listening"), model_tag) as srv:
        yield srv


def test_every_api_worker_listens_on_a_socket_of_its_own_once_ready(fresh: Server) -> None:
    port = urlsplit(fresh.url).port
    assert port is not None
    workers = harness.api_workers(fresh.root)
    assert len(workers) >= 2, "the service runs several API workers"
    listening = {p.pid for p in harness.processes(fresh.root) if harness.listens(p.pid, port)}
    assert listening == set(workers), "only the API workers listen, each on its own socket"
    assert harness.listening_everywhere(fresh)


def test_connections_opened_at_once_reach_every_api_worker(fresh: Server) -> None:
    parts = urlsplit(fresh.url)
    workers = harness.api_workers(fresh.root)
    clients = [socket.create_connection((parts.hostname, parts.port)) for _ in range(CONNECTIONS)]
    ports = {c.getsockname()[1] for c in clients}
    # worker PID -> the client ports it was seen holding: idle connections close after 5 s,
    # so each poll adds to what the earlier polls saw
    seen: dict[int, set[int]] = {pid: set() for pid in workers}

    def every_connection_seen() -> bool:
        for pid in workers:
            conns = psutil.Process(pid).net_connections(kind="tcp")
            seen[pid] |= {c.raddr.port for c in conns if c.raddr and c.raddr.port in ports}
        return set().union(*seen.values()) == ports

    try:
        # a worker still loading its model holds its connections queued until it serves
        harness.wait_for(
            every_connection_seen, "the workers accepted every connection", harness.READY_TIMEOUT_S
        )
    finally:
        for c in clients:
            c.close()
    held = {pid: len(client_ports) for pid, client_ports in seen.items()}
    print(f"\n{CONNECTIONS} connections opened at once, held per API worker: {held}")
    assert all(held.values()), held
