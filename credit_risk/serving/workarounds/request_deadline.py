"""BentoML's request timeout without its memory leak.

Upstream (BentoML 1.4.39 and 1.4.40, checked): `TimeoutMiddleware` schedules a timer for every
request and never cancels it, so the request's context (its tracing span and request, ~14 KB
in the runner) lives on for the whole timeout after the answer. Measured with `make overload`:
at 300 requests/s the runner grew 1.4 MB/s (60 s timeout); with `DeadlineMiddleware` in its
place it stays flat at ~84 MB. The canary in tests/serving/workarounds/test_request_deadline.py
fails once upstream cancels its timer: then delete this module and `replace_timeout`'s call.
"""

from __future__ import annotations

import asyncio
from typing import cast

from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware

from credit_risk.serving.asgi import ASGIApp, Message, Receive, Scope, Send, send_json


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
