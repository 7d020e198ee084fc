"""The request deadline (in-process, no server), and the canary for why it exists: BentoML's
TimeoutMiddleware keeps every request's context alive for the whole timeout."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import weakref
from typing import Any

import bentoml
import pytest
import uvloop
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette

from credit_risk.serving.asgi import Message, Receive, Scope, Send
from credit_risk.serving.edge import EdgeService
from credit_risk.serving.workarounds.request_deadline import DeadlineMiddleware, replace_timeout
from tests.serving.asgi_calls import call_async as call


def status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def body(sent: list[Message]) -> dict[str, Any]:
    return dict(json.loads(b"".join(m.get("body", b"") for m in sent[1:])))


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


# --- DeadlineMiddleware ----------------------------------------------------------------------


def test_deadline_answers_504_when_nothing_was_answered_in_time() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(30)

    sent = asyncio.run(call(DeadlineMiddleware(silent, timeout=0.05)))
    assert status(sent) == 504
    assert body(sent) == {"error": "Not able to process the request in 0.05 seconds"}


def test_deadline_stops_once_the_answer_has_started() -> None:
    async def slow_body(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)  # past the deadline, but the answer is under way
        await send({"type": "http.response.body", "body": b"{}"})

    sent = asyncio.run(call(DeadlineMiddleware(slow_body, timeout=0.05)))
    assert status(sent) == 200
    assert sent[1]["body"] == b"{}"


def test_deadline_lets_the_apps_own_timeout_error_through() -> None:
    async def times_out(scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the app's own")

    with pytest.raises(TimeoutError, match="the app's own"):
        asyncio.run(call(DeadlineMiddleware(times_out, timeout=5)))


def test_deadline_lets_an_app_that_outlived_its_cancellation_answer() -> None:
    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await ok_app(scope, receive, send)  # swallows the cancellation and answers anyway

    sent = asyncio.run(call(DeadlineMiddleware(stubborn, timeout=0.05)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert status(sent) == 200, "one answer, never a 504 after it or a 500 instead"


REQUEST_STATE: contextvars.ContextVar[object] = contextvars.ContextVar("request_state")


class Payload:
    """Stands for what a request's context holds (its span, its parsed body)."""


async def _answer_then_report_payload(middleware: type[Any]) -> bool:
    """Answer one request through `middleware` inside a layer that puts state in the request's
    context, as BentoML's tracing does; is that state still alive once the request is done?"""
    ref: weakref.ref[Payload] | None = None
    inner = middleware(ok_app, timeout=60)

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal ref
        payload = Payload()
        ref = weakref.ref(payload)
        REQUEST_STATE.set(payload)
        await inner(scope, receive, send)

    async def one_request() -> None:
        assert status(await call(traced)) == 200

    await asyncio.create_task(one_request())  # a task per request, as a server runs them
    await asyncio.sleep(0)
    gc.collect()
    assert ref is not None
    return ref() is not None


def test_deadline_keeps_nothing_of_an_answered_request() -> None:
    assert not uvloop.run(_answer_then_report_payload(DeadlineMiddleware))  # the server's loop


def test_bentoml_timeout_middleware_still_keeps_each_request_for_the_whole_timeout() -> None:
    # Why DeadlineMiddleware exists: BentoML's timer is never cancelled, and it holds the
    # request's context. When this fails, BentoML has fixed it and the replacement can go.
    assert uvloop.run(_answer_then_report_payload(TimeoutMiddleware)), (
        "BentoML now cancels its request timer: delete "
        "credit_risk/serving/workarounds/request_deadline.py and replace_timeout's call"
    )


def _tiny_service(cls: type[bentoml.Service[Any]]) -> bentoml.Service[Any]:
    class Tiny:
        @bentoml.api
        def classify(self, x: int) -> int:
            return x

    return bentoml.service(traffic={"timeout": 7}, service_class=cls)(Tiny)


def test_the_edge_service_with_no_outer_layer_only_replaces_the_timeout() -> None:
    app = _tiny_service(EdgeService).to_asgi()
    assert isinstance(app, Starlette)
    assert [m.cls for m in app.user_middleware].count(DeadlineMiddleware) == 1
    assert TimeoutMiddleware not in [m.cls for m in app.user_middleware]


def test_replace_timeout_refuses_an_app_it_cannot_fix() -> None:
    serving = Starlette(middleware=[])
    serving.middleware_stack = serving.build_middleware_stack()
    with pytest.raises(RuntimeError, match="built on the first request"):
        replace_timeout(serving)
    with pytest.raises(RuntimeError, match="found 0"):
        replace_timeout(Starlette(middleware=[]))
