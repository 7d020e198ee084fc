"""ASGI middleware for the API service: the request-size limit BentoML does not have."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a request directly from middleware."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app a body middleware has already read, then passes through."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimitMiddleware:
    """Reject bodies over `max_bytes` with 413 before anything parses them.

    A declared Content-Length is checked up front; a chunked body is buffered up to the limit
    and replayed to the app, so an undeclared oversize body is refused too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass through everything but HTTP requests with an oversize body."""
        if scope["type"] != "http" or scope.get("method") in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await send_json(send, 400, {"error": "invalid Content-Length header"})
                return
            if too_big:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _reject(self, send: Send) -> None:
        await send_json(
            send,
            413,
            {
                "error": f"request body exceeds the limit of {self.max_bytes} bytes",
                "limit_bytes": self.max_bytes,
            },
        )


MAX_ERRORS_IN_MESSAGE: Final = 5
"""Errors spelled out in the one-line message; the full list stays in `detail`."""


def validation_message(detail: list[dict[str, Any]]) -> str:
    """One line naming each offending field: `invalid input: age_years: Field required`."""
    parts = []
    for err in detail[:MAX_ERRORS_IN_MESSAGE]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(detail) - MAX_ERRORS_IN_MESSAGE
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid input: " + "; ".join(parts)


class ErrorMessageMiddleware:
    """Rewrite BentoML's generic 400 ("N validation error for ...IODescriptor") into a message
    that names every offending field, keeping pydantic's `detail` list as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer only 400 JSON responses; everything else streams through untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await run_rewriting_response(
            self.app,
            scope,
            receive,
            send,
            wants=lambda start: start["status"] == 400,
            rewrite=_name_fields,
        )


def _name_fields(_start: Message, body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    detail = data.get("detail") if isinstance(data, dict) else None
    if not (isinstance(detail, list) and detail):
        return body
    data["error"] = validation_message(detail)
    return json.dumps(data).encode()


async def run_rewriting_response(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    wants: Callable[[Message], bool],
    rewrite: Callable[[Message, bytes], bytes],
) -> None:
    """Run `app`; a response whose start message `wants` picks is buffered and sent as
    `rewrite(start, body)` with its Content-Length corrected; any other streams through."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and wants(message):
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = rewrite(start, b"".join(chunks))
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)


BENTOML_REQUEST_ERROR_LOGGER: Final = "bentoml._internal.server.http_app"
"""Where BentoML 1.4 logs every failed request, client errors included, with a traceback."""


class ClientErrorLogFilter(logging.Filter):
    """Log a rejected payload as one INFO line, not an ERROR with a traceback: bad input is the
    client's mistake and must not page anyone or bury real server errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote records whose exception is a pydantic ValidationError; keep all others."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            args = record.args if isinstance(record.args, tuple) else ()
            record.msg = "%s [%s]: rejected invalid input (%d errors)"
            record.args = (*args[:2], exc.error_count())
            record.exc_info = None
            record.exc_text = None
        return True


def install_client_error_log_filter() -> None:
    """Attach the filter once per process."""
    logger = logging.getLogger(BENTOML_REQUEST_ERROR_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
        logger.addFilter(ClientErrorLogFilter())


class RejectionCounterMiddleware:
    """Count every refusal on the API routes by reason, whichever middleware refused it (the
    admission gate, outside them all, counts its own)."""

    def __init__(self, app: ASGIApp, paths: frozenset[str], count: Callable[[str], None]) -> None:
        self.app = app
        self.paths = paths
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Watch the status line of API responses."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                reason = REJECTION_REASONS.get(message["status"])
                if reason is not None:
                    self.count(reason)
            await send(message)

        await self.app(scope, receive, observe)


REJECTION_REASONS: Final[dict[int, str]] = {
    400: "validation",
    413: "size",
    401: "auth",
    429: "overload",
    503: "overload",
    504: "overload",
}
"""HTTP status of a refusal -> the reason label it is counted under."""


class BearerAuthMiddleware:
    """Optional bearer-token auth on the API routes; probes, metrics and the form stay open.

    Tokens are compared in constant time against every configured token, so timing reveals
    neither a token nor which one nearly matched; a refusal says only that auth failed.
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str], tokens: frozenset[str]) -> None:
        self.app = app
        self.paths = paths
        self.tokens = tuple(t.encode() for t in tokens)

    def _authorised(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        ok = False
        for token in self.tokens:  # no early exit: the time taken does not depend on a match
            ok |= hmac.compare_digest(presented.strip(), token)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass when auth is off, the path is open, or the token matches."""
        if (
            not self.tokens
            or scope["type"] != "http"
            or scope["path"] not in self.paths
            or self._authorised(scope)
        ):
            await self.app(scope, receive, send)
            return
        await send_json(
            send,
            401,
            {"error": "missing or invalid bearer token"},
            extra_headers=[(b"www-authenticate", b'Bearer realm="credit-risk"')],
        )
