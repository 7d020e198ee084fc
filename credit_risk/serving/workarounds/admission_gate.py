"""Admission before BentoML's stack: refusing under a flood must stay cheap.

Upstream (BentoML 1.4.40, checked): `traffic.max_concurrency` refuses with 429 from inside
BentoML's middleware, after a tracing span, request metrics and a second task for the timeout,
so a refusal costs about as much as a health check. Measured with wrk at 64 connections, every
request refused: two API workers refused ~2,400 requests/s between them, and the queue formed in
front of the limit. `AdmissionGate` wraps the whole app BentoML builds (via `service_class`,
the one place outside BentoML's own middleware) and refuses with pre-encoded bytes: ~15,500
refusals/s on the same 2 cores. The canary in tests/serving/workarounds/test_admission_gate.py
fails once BentoML's own concurrency limit sits outside its tracing and metrics middleware;
then measure again, and delete the gate if upstream's refusal is as cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import bentoml

from credit_risk.serving.asgi import ASGIApp, Receive, Scope, Send
from credit_risk.serving.workarounds.request_deadline import replace_timeout

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
