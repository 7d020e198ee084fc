"""Admission before BentoML's stack: refusing under a flood must stay cheap.

Upstream (BentoML 1.4.40, checked): `traffic.max_concurrency` refuses with 429 from inside
BentoML's middleware, after a tracing span, request metrics and a second task for the timeout,
so a refusal costs about as much as a health check. Measured with wrk at 64 connections, every
request refused: two API workers refused ~2,400 requests/s between them, and the queue formed in
front of the limit. `AdmissionGate` wraps the whole app BentoML builds (it is marked
`outside_bentoml`, and credit_risk/serving/edge.py `EdgeService` puts it outside BentoML's own
middleware) and refuses with pre-encoded bytes: ~15,500 refusals/s on the same 2 cores. The
canary in tests/serving/workarounds/test_admission_gate.py fails once BentoML's own concurrency
limit sits outside its tracing and metrics middleware; then measure again, and delete
the gate if upstream's refusal is as cheap.

A slot is taken only once the request's body has fully arrived. Counting a request from its
headers let 130 connections that sent the headers of a POST and 10 bytes of body, then stalled,
hold every slot until the request timeout (10 s): everyone else got 429. The gate now reads the
body first, under its own deadline (`BODY_READ_TIMEOUT_S`); a body that has not arrived by then
is answered 408 and the connection closed. No slot is held meanwhile, and refusing when the
slots are full still reads nothing. Uvicorn itself has no body-read timeout (checked, 0.54), so
this part stays when the gate goes: move it to its own middleware then.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from credit_risk.serving.asgi import (
    BODILESS_METHODS,
    ASGIApp,
    BodyTooLargeError,
    ClientGoneError,
    Receive,
    Scope,
    Send,
    read_body,
    replay_body,
    send_json,
)

RETRY_AFTER_S: Final = 1
"""What a 429 tells the client to wait: about the time a full worker takes to drain its
in-flight requests at the measured capacity (64 requests at ~400 requests/s per worker)."""


class AdmissionGate:
    """Admit at most `limit` requests to `paths` at once in this worker; answer 429 past that.

    The refusal is one pre-encoded response with Retry-After, counted through `on_refuse`; it
    reads no body and runs no other middleware, so refusing stays cheap when most requests are
    refused. An admitted request's body is read in full first, within `body_timeout_s`, and
    only then counted; past that deadline the answer is 408, through `on_body_timeout`.
    """

    outside_bentoml: Final = True
    """Wraps the whole app BentoML builds (credit_risk/serving/edge.py), not inside its stack."""

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        limit: int,
        on_refuse: Callable[[], None],
        body_read: BodyRead,
        *,
        retry_after_s: int = RETRY_AFTER_S,
    ) -> None:
        self.app = app
        self.paths = paths
        self.limit = limit
        self.on_refuse = on_refuse
        self.body_read = body_read
        self.in_flight = 0
        self.reading = 0
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
            await self._refuse(send)
            return
        try:
            receive = await self._arrived(scope, receive)
        except ClientGoneError:
            return
        except TimeoutError:
            self.body_read.on_timeout()
            await send_json(send, 408, {"error": self.body_read.message}, CLOSE)
            return
        if self.in_flight >= self.limit:  # filled up while this body was arriving
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        self.on_refuse()
        await send({"type": "http.response.start", "status": 429, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})

    async def _arrived(self, scope: Scope, receive: Receive) -> Receive:
        """The request's body read in full within the deadline, as a `receive` replaying it.

        A body declared or found larger than the size limit is not buffered here: the app
        gets what was read so far followed by the rest of the stream, and refuses it (413).
        """
        if scope.get("method") in BODILESS_METHODS:
            return receive
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.body_read.max_bytes:
            return receive
        self.reading += 1
        try:
            async with asyncio.timeout(self.body_read.timeout_s):
                body = await read_body(receive, self.body_read.max_bytes)
        except BodyTooLargeError as exc:
            return replay_body(exc.partial, receive, more_body=exc.more_body)
        finally:
            self.reading -= 1
        return replay_body(body, receive)


CLOSE: Final = [(b"connection", b"close")]
"""Sent with a 408: the rest of that body may still be on its way, so the connection ends."""


@dataclass(frozen=True)
class BodyRead:
    """How long a request's body may take to arrive, how large the gate buffers it, and how a
    late body is counted."""

    timeout_s: float
    max_bytes: int
    on_timeout: Callable[[], None]

    @property
    def message(self) -> str:
        """The 408's error message."""
        return f"the request body did not arrive within {self.timeout_s:g} s; send it again"
