"""Stalled and idle clients cannot lock the service out (a real server, raw sockets).

Normal traffic runs while the stalled or idle connections are held; what is asserted is what
they got (200s, 408s, closed connections) and that no 408 came before its deadline. How long
anything took is printed (run with `-s` for the figures docs/reliability.md quotes), not
bounded: a loaded machine only makes the server later.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from credit_risk.schema import example_applicant
from credit_risk.serving.connections import RESERVED_DESCRIPTORS
from credit_risk.serving.tuning import BODY_READ_TIMEOUT_S, KEEP_ALIVE_TIMEOUT_S
from load_tests import harness
from tests.conftest import Server, service_workers, start_server, stop_server

pytestmark = pytest.mark.integration

STALLED = 200
IDLE = 2_000
NORMAL_REQUESTS = 200
"""Normal requests sent while the idle connections are held."""
CLOSE_WAIT_S = 60.0
"""Liveness bound on the server closing a connection once its deadline has passed."""
BODY = json.dumps(example_applicant()).encode()


@pytest.fixture(scope="module")
def served(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the stalled connections must not disturb other tests' servers."""
    _allow_client_sockets()
    workdir = tmp_path_factory.mktemp("stalled")
    srv = start_server(
        "service:CreditRiskService", workdir / "server.log", env={"CREDIT_RISK_MODEL": model_tag}
    )
    yield srv
    stop_server(srv)


def _allow_client_sockets() -> None:
    """This process holds every client socket: raise its open-file limit to fit them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE + 1_000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


@dataclass
class Normal:
    """What normal clients saw while the bad ones held their connections."""

    statuses: Counter[int]
    latencies: list[float]

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]

    def summary(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat)
        return (
            f"{len(lat)} normal requests, statuses {dict(self.statuses)}, "
            f"p50 {p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )


async def _normal_traffic(
    url: str,
    done: Callable[[int], bool],
    clients: int = 8,
    headers: dict[str, str] | None = None,
) -> Normal:
    """`clients` closed-loop clients on /classify until `done(requests so far)` (with
    `headers`, e.g. a token)."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []

    async def one_client(client: httpx.AsyncClient) -> None:
        while not done(len(latencies)):
            start = time.perf_counter()
            response = await client.post(
                f"{url}/classify",
                content=BODY,
                headers={"content-type": "application/json", **(headers or {})},
            )
            latencies.append(time.perf_counter() - start)
            statuses[response.status_code] += 1

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
    return Normal(statuses, latencies)


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


def _stalled_head(host: str) -> bytes:
    """The headers of a POST /classify announcing the whole body, and its first 10 bytes."""
    return (
        f"POST /classify HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY[:10]


async def _outcome(reader: asyncio.StreamReader, started: float) -> tuple[str, float]:
    """What a stalled connection got: its status line (or `closed`), and when."""
    try:
        line = await asyncio.wait_for(reader.readline(), BODY_READ_TIMEOUT_S + CLOSE_WAIT_S)
    except (TimeoutError, ConnectionError):
        return "no answer", time.monotonic() - started
    answered = time.monotonic() - started
    status = line.split(b" ")[1].decode() if line else "closed"
    try:  # an answer ends with the server closing the connection
        while line and await asyncio.wait_for(reader.read(65536), CLOSE_WAIT_S):
            pass
    except TimeoutError:
        return f"{status}, left open", answered
    return status, answered


def test_stalled_bodies_get_408_within_the_deadline_and_take_no_slot(served: Server) -> None:
    async def scenario() -> tuple[Normal, list[tuple[str, float]]]:
        host = urlsplit(served.url).netloc
        conns = [await _open(served.url) for _ in range(STALLED)]
        started = time.monotonic()
        for _, writer in conns:
            writer.write(_stalled_head(host))
        answered: list[tuple[str, float]] = []

        async def outcome(reader: asyncio.StreamReader) -> None:
            answered.append(await _outcome(reader, started))

        outcomes = asyncio.gather(*(outcome(r) for r, _ in conns))
        # normal traffic for as long as every stalled connection is still waiting
        normal = await _normal_traffic(served.url, done=lambda _: bool(answered))
        await outcomes
        done = answered
        for _, writer in conns:
            writer.close()
        return normal, done

    normal, outcomes = asyncio.run(scenario())
    seen = Counter(status for status, _ in outcomes)
    latest = max(t for _, t in outcomes)
    print(f"\n{STALLED} stalled connections: {normal.summary()}")
    print(f"stalled: {dict(seen)}, the last answered after {latest:.2f} s")
    assert normal.latencies, "normal requests were answered while the bodies stalled"
    assert set(normal.statuses) == {200}, normal.statuses
    assert seen == {"408": STALLED}
    assert min(t for _, t in outcomes) >= BODY_READ_TIMEOUT_S, "not before the deadline"


def test_idle_keep_alive_connections_do_not_stop_service_and_are_closed(served: Server) -> None:
    async def scenario() -> tuple[Normal, Counter[str], float]:
        host = urlsplit(served.url).netloc
        probe = f"GET /livez HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        conns = []
        for _ in range(IDLE):
            reader, writer = await _open(served.url)
            writer.write(probe)
            conns.append((reader, writer))
        answers = await asyncio.gather(*(r.readuntil(b"\r\n") for r, _ in conns))
        assert all(b" 200 " in a for a in answers)
        idle_since = time.monotonic()
        normal = await _normal_traffic(served.url, done=lambda n: n >= NORMAL_REQUESTS)

        async def closed(reader: asyncio.StreamReader) -> str:
            try:  # the rest of the /livez answer, then the server's close
                while await reader.read(65536):
                    pass
            except ConnectionError:
                return "reset"
            return "closed"

        ends = await asyncio.wait_for(
            asyncio.gather(*(closed(r) for r, _ in conns)), KEEP_ALIVE_TIMEOUT_S + CLOSE_WAIT_S
        )
        waited = time.monotonic() - idle_since
        for _, writer in conns:
            writer.close()
        return normal, Counter(ends), waited

    normal, ends, waited = asyncio.run(scenario())
    print(f"\n{IDLE} idle keep-alive connections: {normal.summary()}")
    print(f"idle ones: {dict(ends)} by the server within {waited:.2f} s of their last answer")
    assert set(normal.statuses) == {200}, normal.statuses
    assert ends == {"closed": IDLE}


SMALL_LIMIT = 100
"""CREDIT_RISK_MAX_CONNECTIONS of the server that is driven past its limit."""


def _bounded_workers(server: Server, limit: int) -> list[psutil.Process] | None:
    """Every worker of every service once each has started and set its descriptor limit to
    `limit`, else None: readiness comes from one API worker while another may still be in its
    start-up hook."""
    roles = {pid: role for pid, role in harness.roles(server.root).items() if role != "supervisor"}
    try:
        workers = [psutil.Process(pid) for pid in roles]
        limits = {w.rlimit(psutil.RLIMIT_NOFILE)[0] for w in workers}
    except psutil.Error:
        return None
    every_worker = {tuple(role.split(":")) for role in roles.values()} == service_workers()
    return workers if every_worker and limits == {limit} else None


def test_past_the_connection_limit_new_connections_are_closed_until_some_go(
    model_tag: str, tmp_path: Path
) -> None:
    _allow_client_sockets()
    server = start_server(
        "service:CreditRiskService",
        tmp_path / "limited.log",
        env={"CREDIT_RISK_MODEL": model_tag, "CREDIT_RISK_MAX_CONNECTIONS": str(SMALL_LIMIT)},
    )
    try:
        limit = SMALL_LIMIT + RESERVED_DESCRIPTORS
        harness.wait_for(
            lambda: _bounded_workers(server, limit), f"every worker limits itself to {limit}"
        )
        workers = harness.processes(server.root)[1:]
        assert {w.rlimit(psutil.RLIMIT_NOFILE)[0] for w in workers} == {limit}
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert _classify_status(client) == 200  # a keep-alive connection open before
            flood = [socket.create_connection((host, port), timeout=5) for _ in range(IDLE // 2)]
            ports = {s.getsockname()[1] for s in flood}
            # every flood connection ends up held by a worker or closed by it at once
            harness.wait_for(
                lambda: len(_held(workers, ports) | _closed(flood)) == len(flood),
                "each connection past the limit is held or closed by the server",
            )
            closed = len(_closed(flood))
            on_open = Counter(_classify_status(client) for _ in range(20))
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            new = Counter(_classify_status(fresh, new_connection=True) for _ in range(20))
        for s in flood:
            s.close()
        harness.wait_for(
            lambda: not _held(workers, ports), "the workers let go of the closed connections"
        )
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            after = Counter(_classify_status(fresh, new_connection=True) for _ in range(20))
    finally:
        stop_server(server)
    print(
        f"\n{IDLE // 2} idle connections past a limit of {SMALL_LIMIT} per worker: "
        f"{closed} closed by the server at once; meanwhile requests on a connection opened "
        f"before: {dict(on_open)}, on new connections: {dict(new)}; once the idle ones went: "
        f"{dict(after)}"
    )
    assert closed > 0, "connections past the limit are closed, not held"
    assert on_open == {200: 20}, "the connections already open keep being served"
    assert after == {200: 20}


def _held(workers: list[psutil.Process], ports: set[int]) -> set[int]:
    """The client ports among `ports` whose connections a worker still has open."""
    return {
        c.raddr.port
        for w in workers
        for c in w.net_connections("tcp")
        if c.raddr and c.raddr.port in ports
    }


def _closed(flood: list[socket.socket]) -> set[int]:
    """The client ports of the connections the server has closed."""
    return {s.getsockname()[1] for s in flood if _closed_by_server(s)}


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def _classify_status(client: httpx.Client, *, new_connection: bool = False) -> int | str:
    headers = {"content-type": "application/json"}
    if new_connection:
        headers["connection"] = "close"
    try:
        return client.post("/classify", content=BODY, headers=headers).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__
