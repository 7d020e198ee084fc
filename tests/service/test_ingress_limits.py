"""The production Ingress's per-client limits, in front of a real server: Debian's nginx on
loopback configured from the rendered overlay's annotations (load_tests/ingress_proxy.py).

One client floods from its own loopback address (127.0.0.3) while normal clients use the
service from theirs (127.0.0.1); run with `-s` for what they saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from credit_risk.policy import MAX_BATCH_APPLICANTS
from credit_risk.schema import example_applicant
from load_tests import harness
from load_tests.ingress_proxy import MISSING, NGINX, IngressLimits, IngressProxy, ingress_proxy
from tests.conftest import ROOT, Server
from tests.deploy.manifests import needs_kubectl, one, render
from tests.service.test_edge_limits import (
    AUTH,
    FLOOD,
    TOKEN,
    WORKER_MEMORY_BOUND_MB,
    _answer,
    _h2load_clients,
    _memory,
    _nothing,
    _open,
    _send_bodies,
    abused,
    served,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    needs_kubectl,
    pytest.mark.skipif(NGINX is None, reason=MISSING),
]
__all__ = ["served"]

FLOODER = "127.0.0.3"
"""The flooding client's own loopback address; the normal clients connect from 127.0.0.1."""


@pytest.fixture(scope="module")
def limits() -> IngressLimits:
    ingress = one(render(ROOT / "deploy/k8s/overlays/production"), "Ingress")
    return IngressLimits.from_annotations(ingress["metadata"]["annotations"])


@pytest.fixture(scope="module")
def proxy(served: Server, limits: IngressLimits) -> Iterator[IngressProxy]:
    with ingress_proxy(limits, served.url) as running:
        yield running


def _nginx_cpu_s(proxy: IngressProxy) -> float:
    """CPU seconds of nginx's master and workers so far."""
    master = psutil.Process(proxy.process.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [master, *master.children()])


def _flood_cost(served: Server, proxy: IngressProxy) -> str:
    """Send the flood through the ingress with no other load; what it cost in CPU: the
    server's, nginx's and the flooding client's (this process)."""
    server_before, nginx_before = (
        sum(harness.cpu_seconds(served.root).values()),
        _nginx_cpu_s(proxy),
    )
    client_before = sum(os.times()[:2])
    started = time.perf_counter()
    outcomes = asyncio.run(_send_bodies(proxy.url, b"", FLOOD, FLOODER, proxy=True))
    wall = time.perf_counter() - started
    server_s = sum(harness.cpu_seconds(served.root).values()) - server_before
    nginx_s, client_s = _nginx_cpu_s(proxy) - nginx_before, sum(os.times()[:2]) - client_before
    assert set(outcomes) <= {"401", "429"}, outcomes
    return (
        f"the flood alone {dict(outcomes)} in {wall:.2f} s: {server_s:.2f} CPU-s in the server, "
        f"{nginx_s:.2f} in nginx, {client_s:.2f} in the flooding client"
    )


def test_a_flood_from_one_client_is_turned_away_at_the_ingress(
    served: Server, proxy: IngressProxy, limits: IngressLimits
) -> None:
    async def flood() -> Counter[str]:
        return await _send_bodies(proxy.url, b"", FLOOD, FLOODER, proxy=True)

    undisturbed = abused(served, _nothing, 5, proxy.url)[0]
    normal, outcomes, before, peaks = abused(served, flood, 5, proxy.url)
    print(
        f"\nthrough the ingress, {FLOOD} unauthorised ~1 MB bodies from one client: "
        f"{dict(outcomes)}; {normal.summary()}\n  alone: {undisturbed.summary()}; p99 under "
        f"the flood {normal.p99 / undisturbed.p99:.2f}x alone\n  API workers: "
        f"{_memory(before, peaks)}"
    )
    assert set(outcomes) <= {"401", "429"}, outcomes  # never a 502: the answer, not a reset
    assert outcomes["429"] > 0
    assert set(normal.statuses) == {200}, normal.statuses
    assert max(peaks.values()) < WORKER_MEMORY_BOUND_MB


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed (make h2load)")
def test_the_flood_at_the_ingress_seen_by_clients_in_c(
    served: Server, proxy: IngressProxy, tmp_path: Path
) -> None:
    alone = _h2load_clients(proxy.url, 5, tmp_path)
    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(_h2load_clients, proxy.url, 5, tmp_path)
        outcomes = asyncio.run(_send_bodies(proxy.url, b"", FLOOD, FLOODER, proxy=True))
        under = seen.result()
    cost = _flood_cost(served, proxy)
    print(
        f"\nthrough the ingress, h2load, 4 connections, under {FLOOD} unauthorised ~1 MB bodies "
        f"from one client {dict(outcomes)}: {under.summary()}\n  alone: {alone.summary()}; "
        f"p99 under the flood {under.p99 / alone.p99:.2f}x alone\n  {cost}"
    )
    assert set(outcomes) <= {"401", "429"}, outcomes
    assert set(alone.statuses) == set(under.statuses) == {200}, (alone, under)


def test_a_refused_body_through_the_ingress_gets_the_services_answer(
    proxy: IngressProxy,
) -> None:
    """The service refuses a request before reading its body (401 here) and closes; the
    ingress, which buffered the whole body and is still sending it, must read that answer
    rather than a reset (which it turns into 502)."""
    batch = json.dumps([example_applicant()] * MAX_BATCH_APPLICANTS)
    wrong = {"authorization": "Bearer not-the-token", "content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        statuses = Counter(
            client.post(f"{proxy.url}/classify_batch", content=batch, headers=wrong).status_code
            for _ in range(40)
        )
    errors = [line for line in proxy.error_log().splitlines() if "[warn]" not in line]
    assert statuses == {401: 40}, (statuses, errors)


def test_one_client_past_its_connection_limit_is_refused_429_and_others_are_served(
    proxy: IngressProxy, limits: IngressLimits
) -> None:
    """One client holds its whole allowance of connections, each with a request whose body it
    has not sent; its next ones are refused before their body, while a client at another
    address is served, and the held requests are answered once their bodies come."""
    body = json.dumps(example_applicant()).encode()
    head = (
        f"POST /classify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    extra = 8

    async def scenario() -> tuple[list[str], list[str], int]:
        held = [await _open(proxy.url, FLOODER) for _ in range(limits.connections)]
        for reader, writer in held:  # admitted once nginx asks for the body (100 Continue)
            writer.write(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
            await writer.drain()
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).startswith(
                b"HTTP/1.1 100 "
            )
        excess = [await _open(proxy.url, FLOODER) for _ in range(extra)]
        for _, writer in excess:
            writer.write(head)  # refused from the head: its body never needed
            await writer.drain()
        refused = [(await _answer(reader, 30, to_close=False))[0] for reader, _ in excess]
        async with httpx.AsyncClient(timeout=30) as client:
            other = await client.post(f"{proxy.url}/classify", content=body, headers=AUTH)
        for _, writer in held:
            writer.write(body)
            await writer.drain()
        answered = [(await _answer(reader, 30, to_close=False))[0] for reader, _ in held]
        for _, writer in held + excess:
            writer.close()
        return refused, answered, other.status_code

    refused, answered, other = asyncio.run(scenario())
    assert refused == ["429"] * extra
    assert other == 200
    assert answered == ["200"] * limits.connections
