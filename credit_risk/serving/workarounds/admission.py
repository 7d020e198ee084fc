"""What happens to a request before BentoML's stack: admission, and a deadline that leaks nothing.

Two fixes to the ASGI app BentoML 1.4 builds for a service, measured with `make overload`:

- Under a flood the refusals are what overloads an API worker. Inside BentoML's middleware a
  429 costs as much as a health check (a tracing span, request metrics and a second task for
  the timeout), so two workers refused only ~2,400 requests/s between them and the queue formed
  in front of any limit placed there. `AdmissionGate` wraps the whole app and refuses with
  pre-encoded bytes: ~15,500 refusals/s on the same 2 cores (wrk, 64 connections).
- BentoML's `TimeoutMiddleware` never cancels its timer, so every request's context (its span
  and request, ~14 KB in the runner) lives on for the whole timeout after the answer: memory
  grew with rate x timeout (60 s in the runner). `DeadlineMiddleware` takes its place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import bentoml
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware

from credit_risk.serving.http import ASGIApp, Message, Receive, Scope, Send, send_json

RETRY_AFTER_S: Final = 1
"""What a 429 tells the client to wait: about the time a full worker takes to drain its
in-flight requests at the measured capacity (64 requests at ~400 requests/s per worker)."""


class AdmissionGate:
    """Admit at most `limit` requests to `paths` at once in this worker; answer 429 past that.

    The refusal is one pre-encoded response with Retry-After, counted through `on_refuse`; it
    reads no body and runs no other middleware, so refusing stays cheap when most requests are
    refused.
    """

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        limit: int,
        on_refuse: Callable[[], None],
        retry_after_s: int = RETRY_AFTER_S,
    ) -> None:
        self.app = app
        self.paths = paths
        self.limit = limit
        self.on_refuse = on_refuse
        self.in_flight = 0
        body = json.dumps(
            {"error": f"server busy: {limit} requests already in progress here; retry later"}
        ).encode()
        self._headers: Final = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_s).encode()),
        ]
        self._body: Final = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, or refuse at once."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.on_refuse()
            await send({"type": "http.response.start", "status": 429, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class DeadlineMiddleware:
    """BentoML's request timeout without its leak: a 504 when no response has started within
    `timeout` seconds, with the timer cancelled as soon as the request is answered."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app under the deadline; the deadline stops once the response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.timeout(self.timeout)
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                if not deadline.expired():  # an app that outlived its cancellation: no 504 now
                    deadline.reschedule(None)  # streaming the answer is not bounded
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_started)
        except TimeoutError:
            if not deadline.expired() or started:
                raise  # the app's own TimeoutError, not ours
            await send_json(
                send, 504, {"error": f"Not able to process the request in {self.timeout} seconds"}
            )


@dataclass(frozen=True)
class Admission:
    """Which routes the gate guards, how many requests it admits per worker, how it counts."""

    paths: frozenset[str]
    limit: int
    on_refuse: Callable[[], None]


def service_class(admission: Admission | None = None) -> type[bentoml.Service[Any]]:
    """A `bentoml.Service` whose app has `DeadlineMiddleware` for BentoML's timeout and, given
    `admission`, sits behind an `AdmissionGate`. Pass it as `@bentoml.service(service_class=...)`:
    BentoML adds user middleware inside its own, so `to_asgi` is the one place outside it."""

    class FrontedService(bentoml.Service[Any]):  # type: ignore[misc]  # bentoml is untyped here
        __slots__ = ()

        def to_asgi(self, is_main: bool = True) -> Any:
            """BentoML's app for this service, its timeout replaced, behind the gate."""
            app = super().to_asgi(is_main)
            replace_timeout(app)
            if admission is None:
                return app
            return AdmissionGate(app, admission.paths, admission.limit, admission.on_refuse)

    return FrontedService


def replace_timeout(app: Starlette) -> None:
    """Swap BentoML's TimeoutMiddleware for DeadlineMiddleware, same place, same timeout."""
    if app.middleware_stack is not None:
        raise RuntimeError("too late: the middleware stack is built on the first request")
    found = [
        i for i, m in enumerate(app.user_middleware) if m.cls is cast(object, TimeoutMiddleware)
    ]
    if len(found) != 1:
        raise RuntimeError(f"expected BentoML's one TimeoutMiddleware, found {len(found)}")
    timeout = cast(float, app.user_middleware[found[0]].kwargs["timeout"])  # as configured
    app.user_middleware[found[0]] = Middleware(DeadlineMiddleware, timeout=timeout)
