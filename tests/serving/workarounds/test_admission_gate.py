"""The admission gate (in-process, no server), and the canary for why it exists: BentoML's
own concurrency limit refuses from inside its tracing and metrics middleware."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware, TimeoutMiddleware

from credit_risk.serving.asgi import Message, Receive, Scope, Send
from credit_risk.serving.workarounds.admission_gate import AdmissionGate, BodyRead
from load_tests.harness import until
from tests.serving.asgi_calls import call_async as call
from tests.serving.asgi_calls import http_scope
from tests.serving.workarounds.conftest import Upstream

PATHS = frozenset({"/classify"})
BODY = BodyRead(timeout_s=5, max_bytes=1_000, budget_bytes=10_000)


def status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def body(sent: list[Message]) -> dict[str, Any]:
    return dict(json.loads(b"".join(m.get("body", b"") for m in sent[1:])))


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class Held:
    """An app whose requests wait until released, to hold requests in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        await self.release.wait()
        await ok_app(scope, receive, send)


# --- AdmissionGate ---------------------------------------------------------------------------


def test_gate_admits_up_to_the_limit_and_refuses_the_rest_with_429() -> None:
    async def scenario() -> None:
        held = Held()
        gate = AdmissionGate(held, PATHS, limit=3, body_read=BODY)
        admitted = [asyncio.create_task(call(gate)) for _ in range(3)]
        await until(lambda: held.entered == 3, "three requests reach the app")
        assert gate.in_flight == 3

        sent = await call(gate)  # the fourth, while three are in flight
        assert status(sent) == 429
        assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
        assert "busy" in body(sent)["error"]
        assert "3 requests" in body(sent)["error"]
        assert held.entered == 3, "refused without reaching the app"

        held.release.set()
        assert [status(s) for s in await asyncio.gather(*admitted)] == [200, 200, 200]
        assert gate.in_flight == 0
        assert status(await call(gate)) == 200, "admits again once requests finish"

    asyncio.run(scenario())


def test_gate_lets_other_paths_through_whatever_the_load() -> None:
    async def scenario() -> None:
        held = Held()
        gate = AdmissionGate(held, PATHS, limit=1, body_read=BODY)
        first = asyncio.create_task(call(gate))
        await until(lambda: gate.in_flight == 1, "the first request is admitted")
        probe = asyncio.create_task(call(gate, http_scope("/readyz")))
        await until(lambda: held.entered == 2, "the probe is not counted or refused")
        assert gate.in_flight == 1
        held.release.set()
        assert [status(s) for s in await asyncio.gather(first, probe)] == [200, 200]

    asyncio.run(scenario())


def test_gate_frees_the_slot_of_a_request_that_failed() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    gate = AdmissionGate(failing, PATHS, limit=1, body_read=BODY)
    with pytest.raises(RuntimeError):
        asyncio.run(call(gate))
    assert gate.in_flight == 0


# --- the gate reads the body before it admits ------------------------------------------------


class Trickle:
    """A client's side of one request: body chunks arrive when the test sends them."""

    def __init__(self, declared: int | None = None) -> None:
        self.chunks: asyncio.Queue[Message] = asyncio.Queue()
        headers = [] if declared is None else [(b"content-length", str(declared).encode())]
        self.scope: Scope = {**http_scope(), "headers": headers}
        self.sent: list[Message] = []

    def part(self, data: bytes, *, more: bool = True) -> None:
        self.chunks.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def hang_up(self) -> None:
        self.chunks.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> Message:
        return await self.chunks.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)


class Echo:
    """An app that records the body it was given and whether it was admitted with it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.gate: AdmissionGate | None = None
        self.in_flight_seen: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        assert self.gate is not None
        self.in_flight_seen.append(self.gate.in_flight)
        await ok_app(scope, receive, send)


def _echo_gate(
    limit: int, timeout_s: float, budget_bytes: int = 1_000
) -> tuple[Echo, AdmissionGate]:
    echo = Echo()
    body_read = BodyRead(timeout_s, max_bytes=100, budget_bytes=budget_bytes)
    gate = AdmissionGate(echo, PATHS, limit=limit, body_read=body_read)
    echo.gate = gate
    return echo, gate


def test_a_stalled_body_holds_no_slot() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=1, timeout_s=600)
        stalled = Trickle(declared=50)
        stalled.part(b"0123456789")  # 10 of 50 bytes, then nothing
        waiting = asyncio.create_task(gate(stalled.scope, stalled.receive, stalled.send))
        await until(lambda: gate.reading == 1, "the gate is reading the stalled body")
        assert gate.in_flight == 0

        sent = await call(gate)  # the one slot is free for a complete request meanwhile
        assert status(sent) == 200
        assert echo.bodies == [b"{}"]
        assert (gate.in_flight, gate.reading) == (0, 1), "still reading the stalled body"

        stalled.hang_up()
        await waiting
        assert stalled.sent == []
        assert echo.bodies == [b"{}"], "the stalled request never reached the app"
        assert (gate.in_flight, gate.reading) == (0, 0)

    asyncio.run(scenario())


def test_a_stalled_body_gets_408_at_the_deadline() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=1, timeout_s=0.2)
        stalled = Trickle(declared=50)
        stalled.part(b"0123456789")
        started = time.perf_counter()
        await gate(stalled.scope, stalled.receive, stalled.send)
        assert time.perf_counter() - started >= 0.2, "not before the deadline"
        assert status(stalled.sent) == 408
        assert (b"connection", b"close") in stalled.sent[0]["headers"]
        assert "did not arrive within 0.2 s" in body(stalled.sent)["error"]
        assert gate.budget.held == 0
        assert (gate.in_flight, gate.reading) == (0, 0)
        assert echo.bodies == [], "the stalled request never reached the app"

    asyncio.run(scenario())


def test_a_body_in_several_parts_is_admitted_once_complete_and_replayed_whole() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=1, timeout_s=5)
        client = Trickle()  # chunked: no Content-Length
        client.part(b'{"a": ')
        request = asyncio.create_task(gate(client.scope, client.receive, client.send))
        await until(lambda: gate.reading == 1, "the gate is reading the first part")
        assert gate.in_flight == 0
        client.part(b"1}", more=False)
        await request
        assert status(client.sent) == 200
        assert echo.bodies == [b'{"a": 1}']
        assert echo.in_flight_seen == [1], "counted while the app ran"
        assert (gate.in_flight, gate.reading) == (0, 0)

    asyncio.run(scenario())


def test_a_client_that_hangs_up_mid_body_is_answered_nothing() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=1, timeout_s=5)
        client = Trickle(declared=50)
        client.part(b"0123")
        client.hang_up()
        await gate(client.scope, client.receive, client.send)
        assert client.sent == []
        assert echo.bodies == []
        assert (gate.in_flight, gate.reading) == (0, 0)

    asyncio.run(scenario())


def test_a_chunked_body_past_the_size_limit_is_413_and_closes_the_connection() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=1, timeout_s=5)
        client = Trickle()  # no Content-Length: a declared one is refused before the gate
        client.part(b"x" * 60)
        client.part(b"x" * 60)
        await gate(client.scope, client.receive, client.send)
        assert status(client.sent) == 413
        assert (b"connection", b"close") in client.sent[0]["headers"]
        assert body(client.sent)["limit_bytes"] == 100
        assert echo.bodies == []
        assert gate.budget.held == 0

    asyncio.run(scenario())


# --- the body budget -------------------------------------------------------------------------


def test_a_body_that_does_not_fit_the_budget_is_429_before_a_byte_is_read() -> None:
    async def scenario() -> None:
        _, gate = _echo_gate(limit=10, timeout_s=5, budget_bytes=100)
        holding = Trickle(declared=80)
        holding.part(b"x" * 70)  # 70 bytes held, still arriving
        reading = asyncio.create_task(gate(holding.scope, holding.receive, holding.send))
        await until(lambda: gate.budget.held == 70, "the arriving body is held in the budget")

        late = Trickle(declared=50)  # sends nothing: a read would wait
        await asyncio.wait_for(gate(late.scope, late.receive, late.send), timeout=1)
        assert status(late.sent) == 429
        assert dict(late.sent[0]["headers"])[b"retry-after"] == b"1"
        assert "bodies" in body(late.sent)["error"]

        small = Trickle(declared=20)
        small.part(b"x" * 20, more=False)
        await gate(small.scope, small.receive, small.send)
        assert status(small.sent) == 200, "what fits is admitted"

        holding.part(b"x" * 10, more=False)
        await reading
        assert status(holding.sent) == 200
        assert gate.budget.held == 0, "every byte given back once answered"

    asyncio.run(scenario())


def test_a_chunked_body_that_outgrows_the_budget_is_429_and_closes() -> None:
    async def scenario() -> None:
        echo, gate = _echo_gate(limit=10, timeout_s=5, budget_bytes=50)
        client = Trickle()
        client.part(b"x" * 40)
        client.part(b"x" * 40)
        await gate(client.scope, client.receive, client.send)
        assert status(client.sent) == 429
        assert (b"connection", b"close") in client.sent[0]["headers"]
        assert echo.bodies == []
        assert gate.budget.held == 0

    asyncio.run(scenario())


def test_an_admitted_body_is_held_in_the_budget_until_answered() -> None:
    async def scenario() -> None:
        held = Held()
        gate = AdmissionGate(held, PATHS, limit=5, body_read=BODY)
        request = asyncio.create_task(call(gate, chunks=[b"x" * 300]))
        await until(lambda: gate.in_flight == 1, "the request is admitted")
        assert (gate.in_flight, gate.budget.held) == (1, 300)
        held.release.set()
        await request
        assert (gate.in_flight, gate.budget.held) == (0, 0)

    asyncio.run(scenario())


def test_refusing_when_full_reads_no_body() -> None:
    async def scenario() -> None:
        held = Held()
        gate = AdmissionGate(held, PATHS, limit=1, body_read=BODY)
        first = asyncio.create_task(call(gate))
        await until(lambda: gate.in_flight == 1, "the first request is admitted")
        client = Trickle(declared=50)  # sends nothing: a read would wait
        await asyncio.wait_for(gate(client.scope, client.receive, client.send), timeout=60)
        assert status(client.sent) == 429
        held.release.set()
        await first

    asyncio.run(scenario())


# --- canary -------------------------------------------------------------------------------------


def test_bentomls_concurrency_limit_still_refuses_inside_its_tracing_and_metrics() -> None:
    # Why the gate exists: BentoML's own 429 (traffic.max_concurrency) comes from middleware
    # that runs after a request has been traced, measured and given a timeout task, so refusing
    # costs as much as serving a probe. When this fails, BentoML's limit sits outside them:
    # measure its refusal rate again and delete AdmissionGate if it is as cheap.
    order = [m.cls.__name__ for m in Upstream.to_asgi().user_middleware]
    limit = order.index(MaxConcurrencyMiddleware.__name__)
    for outer in ("OpenTelemetryMiddleware", TimeoutMiddleware.__name__):
        assert order.index(outer) < limit, (
            f"BentoML's concurrency limit now runs before {outer} ({order}): "
            "revisit credit_risk/serving/workarounds/admission_gate.py"
        )
    metrics = [name for name in order if "Metrics" in name]
    assert metrics, order
    assert all(order.index(name) < limit for name in metrics), (
        f"BentoML's concurrency limit now runs before its request metrics ({order}): "
        "revisit credit_risk/serving/workarounds/admission_gate.py"
    )
