"""Calling ASGI apps in-process: one request in, the messages the app sent out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from credit_risk.serving.asgi import ASGIApp, Message, Receive, Scope, Send


def http_scope(
    path: str = "/classify",
    method: str = "POST",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> Scope:
    """An HTTP request's scope as a server builds it."""
    return {"type": "http", "method": method, "path": path, "headers": list(headers)}


async def call_async(
    app: ASGIApp,
    scope: Scope | None = None,
    chunks: Sequence[bytes] = (b"{}",),
    *,
    hang_up: bool = False,
) -> list[Message]:
    """Run one request whose body arrives in `chunks` through `app`; return what it sent. With
    `hang_up`, the client disconnects after the chunks instead of ending the body."""
    pending = list(chunks) or [b""]

    async def receive() -> Message:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending) or hang_up}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope or http_scope(), receive, send)
    return sent


def call(
    app: ASGIApp,
    scope: Scope | None = None,
    chunks: Sequence[bytes] = (b"{}",),
    *,
    hang_up: bool = False,
) -> Sent:
    """`call_async` on a fresh event loop."""
    return Sent(asyncio.run(call_async(app, scope, chunks, hang_up=hang_up)))


class Sent(list[Message]):
    """What an app sent for one request, read as a response."""

    @property
    def status(self) -> int:
        """The status line's code."""
        return int(self[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        """Response headers (lower-case names as ASGI gives them)."""
        return dict(self[0].get("headers") or [])

    @property
    def body(self) -> bytes:
        """The whole response body."""
        return b"".join(m.get("body", b"") for m in self[1:])

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Echo:
    """An app that answers 200 with the body it read, and remembers each request's scope."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await answer(send, 200, b"".join(chunks), b"application/json")


async def answer(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    """Send a whole response, as Starlette's plain responses do."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def responding(
    status: int, body: bytes, content_type: bytes = b"text/plain", **headers: bytes
) -> ASGIApp:
    """An app that always answers `status` with `body` (and any extra `headers`)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *((k.encode(), v) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
