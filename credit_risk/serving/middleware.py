"""The service's own ASGI middleware: a request-size limit, optional bearer auth, a count of
every refusal by reason, and JSON answers for unknown routes and methods."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Final

from credit_risk.serving.asgi import (
    BODILESS_METHODS,
    ASGIApp,
    BodyTooLargeError,
    ClientGoneError,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    replay_body,
    run_rewriting_response,
    send_json,
)


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
        if scope["type"] != "http" or scope.get("method") in BODILESS_METHODS:
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

        try:
            body = await read_body(receive, self.max_bytes)
        except ClientGoneError:
            return
        except BodyTooLargeError:
            await self._reject(send)
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _reject(self, send: Send) -> None:
        await send_json(
            send,
            413,
            {
                "error": f"request body exceeds the limit of {self.max_bytes} bytes",
                "limit_bytes": self.max_bytes,
            },
        )


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
    405: "method",
    413: "size",
    415: "media_type",
    401: "auth",
    429: "overload",
    503: "overload",
    504: "overload",
}
"""HTTP status of a refusal -> the reason label it is counted under."""


class BearerAuthMiddleware:
    """Optional bearer-token auth on the API routes; probes, metrics and the form stay open.

    Tokens are compared in constant time against every configured token, so timing reveals
    neither a token nor which one nearly matched; a refusal says only that auth failed. It runs
    outside BentoML's stack, before anything reads the body, and counts through `on_refuse`.
    """

    outside_bentoml: Final = True
    """Wraps the whole app BentoML builds (credit_risk/serving/edge.py): refuse before reading."""

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        tokens: frozenset[str],
        on_refuse: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.tokens = tuple(t.encode() for t in tokens)
        self.on_refuse = on_refuse

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
        self.on_refuse()
        await send_json(
            send,
            401,
            {"error": "missing or invalid bearer token"},
            extra_headers=[(b"www-authenticate", b'Bearer realm="credit-risk"')],
        )


PLAIN_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics"})
"""Probes and the scrape endpoint: answered as orchestrators and Prometheus expect, untouched."""


class JsonNotFoundMiddleware:
    """Answer an unknown path (404) or a wrong method (405) with JSON `{"error": ...}`, as every
    other refusal is, instead of Starlette's plain text; the Allow header of a 405 stays."""

    def __init__(self, app: ASGIApp, plain_paths: frozenset[str] = PLAIN_PATHS) -> None:
        self.app = app
        self.plain_paths = plain_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite plain-text 404 and 405 answers; stream everything else through."""
        if scope["type"] != "http" or scope["path"] in self.plain_paths:
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", ""), scope["path"]

        def plain_refusal(start: Message) -> bool:
            headers = dict(start.get("headers") or [])
            is_json = headers.get(b"content-type", b"").startswith(b"application/json")
            return start["status"] in (404, 405) and not is_json

        def explain(start: Message, _body: bytes) -> bytes:
            if start["status"] == 404:
                error = f"no such route: {path}"
            else:
                allowed = dict(start.get("headers") or []).get(b"allow", b"").decode("latin-1")
                error = f"method {method} not allowed on {path}; allowed: {allowed}"
            return json.dumps({"error": error}).encode()

        await run_rewriting_response(
            self.app,
            scope,
            receive,
            send,
            wants=plain_refusal,
            rewrite=explain,
            content_type=b"application/json",
        )
