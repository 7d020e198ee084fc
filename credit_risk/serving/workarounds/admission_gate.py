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

The bodies a worker holds are bounded too, by bytes (`BodyBudget`): the bodies being read and
those of admitted requests together may hold at most the budget. A body whose declared length
does not fit in what is left is refused 429 before a byte of it is read; one that outgrows it
while arriving (a chunked body) is refused 429 and its connection closed. Before, 1,000
connections each sending nearly 1 MB took the API workers from 260 MB to 1,206 MB.
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass, field
from typing import Final

from credit_risk.serving.asgi import (
    BODILESS_METHODS,
    CLOSE,
    ASGIApp,
    ClientGoneError,
    Receive,
    Scope,
    Send,
    header,
    replay_body,
    send_json,
    unread_body_headers,
)

RETRY_AFTER_S: Final = 1
"""What a 429 tells the client to wait: about the time a full worker takes to drain its
in-flight requests at the measured capacity (64 requests at ~400 requests/s per worker)."""


@dataclass
class BodyBudget:
    """Bytes of request bodies this worker may hold at once, and how many it holds now."""

    capacity: int
    held: int = field(default=0)

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes fit."""
        return self.held + size <= self.capacity

    def take(self, size: int) -> bool:
        """Hold `size` more bytes if they fit; whether they did."""
        if not self.fits(size):
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Release `size` bytes."""
        self.held -= size


@dataclass(frozen=True)
class BodyRead:
    """How long a request's body may take to arrive, how large it may be, and how many bytes of
    bodies the worker holds at most."""

    timeout_s: float
    max_bytes: int
    budget_bytes: int

    @property
    def message(self) -> str:
        """The 408's error message."""
        return f"the request body did not arrive within {self.timeout_s:g} s; send it again"


class BodyOverBudgetError(Exception):
    """A body outgrew what the worker's body budget had left while it arrived."""


class BodyTooLargeError(Exception):
    """A body of undeclared length grew past the size limit while it arrived."""


class AdmissionGate:
    """Admit at most `limit` requests to `paths` at once in this worker; answer 429 past that,
    or when their bodies would not fit in the body budget.

    A refusal for the in-flight limit is one pre-encoded response with Retry-After; it reads
    no body and runs no other middleware, so refusing stays cheap when most requests are
    refused. An admitted request's body is read in full first, within the body deadline (else
    408), and only then counted; its bytes stay held in the budget until it is answered.
    """

    outside_bentoml: Final = True
    """Wraps the whole app BentoML builds (credit_risk/serving/edge.py), not inside its stack."""

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        limit: int,
        body_read: BodyRead,
        *,
        retry_after_s: int = RETRY_AFTER_S,
    ) -> None:
        self.app = app
        self.paths = paths
        self.limit = limit
        self.body_read = body_read
        self.budget = BodyBudget(body_read.budget_bytes)
        self.in_flight = 0
        self.reading = 0
        self.retry_after = (b"retry-after", str(retry_after_s).encode())
        body = json.dumps(
            {"error": f"server busy: {limit} requests already in progress here; retry later"}
        ).encode()
        self._headers: Final = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            self.retry_after,
        ]
        self._body: Final = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, or refuse at once."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, send)
            return
        if not self.budget.fits(_declared(scope)):
            await self._over_budget(send, unread_body_headers(scope))
            return
        body = await self._body_or_refusal(scope, receive, send)
        if body is _REFUSED:
            return
        try:
            if self.in_flight >= self.limit:  # filled up while this body was arriving
                await self._refuse(scope, send)
                return
            self.in_flight += 1
            try:
                replayed = receive if body is None else replay_body(body, receive)
                await self.app(scope, replayed, send)
            finally:
                self.in_flight -= 1
        finally:
            self.budget.give_back(len(body or b""))

    async def _body_or_refusal(
        self, scope: Scope, receive: Receive, send: Send
    ) -> bytes | _Refused | None:
        """The body (None without one), or `_REFUSED` once the request has been answered."""
        try:
            return await self._arrived(scope, receive)
        except ClientGoneError:
            return _REFUSED
        except TimeoutError:
            await send_json(send, 408, {"error": self.body_read.message}, CLOSE)
        except BodyOverBudgetError:
            await self._over_budget(send, CLOSE)
        except BodyTooLargeError:
            limit = self.body_read.max_bytes
            error = {"error": f"request body exceeds the limit of {limit} bytes"}
            await send_json(send, 413, {**error, "limit_bytes": limit}, CLOSE)
        return _REFUSED

    async def _refuse(self, scope: Scope, send: Send) -> None:
        headers = [*self._headers, *unread_body_headers(scope)]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})

    async def _over_budget(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        mib = self.budget.capacity / (1 << 20)
        error = (
            f"server busy: request bodies in progress here already hold this worker's "
            f"{mib:g} MiB for bodies; retry later"
        )
        await send_json(send, 429, {"error": error}, [self.retry_after, *headers])

    async def _arrived(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request's body, read in full within the deadline and held in the budget (None
        for a method without one)."""
        if scope.get("method") in BODILESS_METHODS:
            return None
        self.reading += 1
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_read.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise ClientGoneError
                    chunk = message.get("body", b"")
                    if size + len(chunk) > self.body_read.max_bytes:
                        raise BodyTooLargeError
                    if not self.budget.take(len(chunk)):
                        raise BodyOverBudgetError
                    size += len(chunk)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except BaseException:
            self.budget.give_back(size)
            raise
        finally:
            self.reading -= 1


class _Refused(enum.Enum):
    REFUSED = "refused"


_REFUSED: Final = _Refused.REFUSED


def _declared(scope: Scope) -> int:
    declared = header(scope, b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else 0
