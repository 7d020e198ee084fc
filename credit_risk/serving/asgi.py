"""ASGI building blocks the service's middleware share: types, direct answers, body replay."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

DRAINABLE_BYTES = 64 * 1024
"""A body at most this large that a refusal leaves unread is read and dropped by the server, so
the connection stays open; a larger one, or one of unknown length, ends the connection."""

CLOSE: Final = [(b"connection", b"close")]


class ClientGoneError(Exception):
    """The client disconnected before its body had fully arrived."""


class BodyTooLargeError(Exception):
    """The body grew past the limit while it was being read; `partial` is what was read, and
    `more_body` whether the client has more to send."""

    def __init__(self, partial: bytes = b"", *, more_body: bool = False) -> None:
        super().__init__("request body over the limit")
        self.partial = partial
        self.more_body = more_body


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


def header(scope: Scope, name: bytes) -> bytes | None:
    """The value of request header `name` (lower case), or None."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def unread_body_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers a refusal sent before reading the body needs: `Connection: close` unless the
    body is absent or small enough for the server to drain (`DRAINABLE_BYTES`)."""
    if scope.get("method") in BODILESS_METHODS:
        return []
    declared = header(scope, b"content-length")
    if declared is None:
        return CLOSE if header(scope, b"transfer-encoding") is not None else []
    if declared.isdigit() and int(declared) <= DRAINABLE_BYTES:
        return []
    return CLOSE


def replay_body(body: bytes, receive: Receive, *, more_body: bool = False) -> Receive:
    """A `receive` that hands the app a body middleware has already read (or, with `more_body`,
    its beginning), then passes through."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more_body}
        return await receive()

    return replay


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes:
    """The whole request body; raises `BodyTooLargeError` past `max_bytes`, `ClientGoneError` if the
    client disconnects first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if max_bytes is not None and size > max_bytes:
            more = bool(message.get("more_body", False))
            raise BodyTooLargeError(b"".join(chunks), more_body=more)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def run_rewriting_response(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    wants: Callable[[Message], bool],
    rewrite: Callable[[Message, bytes], bytes],
    content_type: bytes | None = None,
) -> None:
    """Run `app`; a response whose start message `wants` picks is buffered and sent as
    `rewrite(start, body)` with its Content-Length (and, given, its Content-Type) corrected; any
    other streams through."""
    replaced = {b"content-length"} | ({b"content-type"} if content_type else set())
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
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in replaced]
            headers.append((b"content-length", str(len(body)).encode()))
            if content_type:
                headers.append((b"content-type", content_type))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)
