"""The edge's checks on a request's head, before any body is read: bearer auth, and what the
body must declare (its length, media type and encoding)."""

from __future__ import annotations

import hmac
from typing import Final

from credit_risk.serving.asgi import (
    BODILESS_METHODS,
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    send_json,
    unread_body_headers,
)
from credit_risk.serving.workarounds.openapi_document import JSON_MEDIA_TYPE

IDENTITY: Final = "identity"
"""The only Content-Encoding accepted: the body as it is, uncompressed."""


class BearerAuthMiddleware:
    """Optional bearer-token auth on the API routes; probes, metrics and the form stay open.

    Checked on the request's head, before its body is read: an unauthorised body is never
    buffered. Tokens are compared in constant time against every configured token, so timing
    reveals neither a token nor which one nearly matched; a refusal says only that auth failed.
    """

    outside_bentoml: Final = True

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        tokens: frozenset[str],
        prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.paths = paths
        self.prefixes = prefixes
        """Routes under these (e.g. `/decisions` and `/decisions/<id>`) are guarded too."""
        self.tokens = tuple(t.encode() for t in tokens)

    def _guarded(self, path: str) -> bool:
        return path in self.paths or any(
            path == p or path.startswith(p + "/") for p in self.prefixes
        )

    def _authorised(self, scope: Scope) -> bool:
        scheme, _, presented = (header(scope, b"authorization") or b"").partition(b" ")
        ok = False
        for token in self.tokens:  # no early exit: the time taken does not depend on a match
            ok |= hmac.compare_digest(presented.strip(), token)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass when auth is off, the path is open, or the token matches."""
        if (
            not self.tokens
            or scope["type"] != "http"
            or not self._guarded(scope["path"])
            or self._authorised(scope)
        ):
            await self.app(scope, receive, send)
            return
        await send_json(
            send,
            401,
            {"error": "missing or invalid bearer token"},
            [(b"www-authenticate", b'Bearer realm="credit-risk"'), *unread_body_headers(scope)],
        )


class BodyFormatMiddleware:
    """Refuse, from the head alone, a body the API cannot take: a Content-Length that is not a
    number (400) or over `max_bytes` (413), a media type other than JSON (415), or a
    Content-Encoding other than identity (415). An unlabelled body is read as JSON."""

    outside_bentoml: Final = True

    def __init__(self, app: ASGIApp, paths: frozenset[str], max_bytes: int) -> None:
        self.app = app
        self.paths = paths
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the head of API requests that carry a body; pass everything else."""
        if (
            scope["type"] != "http"
            or scope["path"] not in self.paths
            or scope.get("method") in BODILESS_METHODS
        ):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, body, headers = refusal
        await send_json(send, status, body, [*headers, *unread_body_headers(scope)])

    def _refusal(
        self, scope: Scope
    ) -> tuple[int, dict[str, object], list[tuple[bytes, bytes]]] | None:
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return 400, {"error": "invalid Content-Length header"}, []
            if int(declared) > self.max_bytes:
                limit = {"limit_bytes": self.max_bytes}
                error = f"request body exceeds the limit of {self.max_bytes} bytes"
                return 413, {"error": error, **limit}, []
        media_type = media_type_of(scope)
        if media_type and media_type != JSON_MEDIA_TYPE:
            error = f"unsupported Content-Type {media_type!r}: send the body as {JSON_MEDIA_TYPE}"
            return 415, {"error": error, "accepted": [JSON_MEDIA_TYPE]}, []
        encoding = (header(scope, b"content-encoding") or b"").decode("latin-1").strip().lower()
        if encoding and encoding != IDENTITY:
            error = f"unsupported Content-Encoding {encoding!r}: send the body uncompressed"
            return (
                415,
                {"error": error, "accepted": [IDENTITY]},
                [(b"accept-encoding", b"identity")],
            )
        return None


def media_type_of(scope: Scope) -> str:
    """The request's media type, lower case, without parameters ('' when not given)."""
    declared = header(scope, b"content-type") or b""
    return declared.split(b";")[0].strip().lower().decode("latin-1")
