"""Every request counted at the edge, with labels that stay bounded whatever clients send.

BentoML's own request metrics label each request with its raw path (20 random unknown paths
took /metrics from 468 to 868 series) and never see what is refused before its stack (429s
were missing). This layer, outermost, counts every HTTP request by route (a served path, or
`other`) and status, times it by route, keeps how many are in progress, and counts each
refusal on the API routes by reason.
Refusals made below the ASGI app (431, 408 and malformed requests at the HTTP protocol,
credit_risk/serving/workarounds/http_protocol.py) are counted there, through `count`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from credit_risk.serving.asgi import ASGIApp, Message, Receive, Scope, Send
from credit_risk.serving.routes import RouteTable

CLIENT_GONE: Final = 499
"""Status counted for a request whose client went away before any answer (nginx's code)."""

REJECTION_REASONS: Final[dict[int, str]] = {
    400: "validation",
    401: "auth",
    405: "method",
    408: "body_timeout",
    413: "size",
    415: "media_type",
    429: "overload",
    503: "overload",
    504: "overload",
}
"""HTTP status of a refusal on an API route -> the reason it is counted under."""


class RequestMetricsMiddleware:
    """Count and time every HTTP request by bounded route and status; count API refusals."""

    outside_bentoml: Final = True

    def __init__(
        self,
        app: ASGIApp,
        routes: RouteTable,
        api_paths: frozenset[str],
        *,
        observe: Callable[[str, int, float], None],
        reject: Callable[[str], None],
        in_flight: Callable[[str, int], None],
    ) -> None:
        self.app = app
        self.routes = routes
        self.api_paths = api_paths
        self.observe = observe
        self.reject = reject
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Watch the status line; record once the request is over, however it ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = CLIENT_GONE
        route = self.routes.label(scope["path"])
        self.in_flight(route, 1)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except BaseException:
            if status == CLIENT_GONE:
                status = 500  # the server answers an escaped exception with a 500
            raise
        finally:
            path = scope["path"]
            self.in_flight(route, -1)
            self.observe(route, status, time.perf_counter() - started)
            reason = REJECTION_REASONS.get(status)
            if reason is not None and path in self.api_paths:
                self.reject(reason)
