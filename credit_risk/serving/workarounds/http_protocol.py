"""Bounds on what one connection may hold before its request reaches the app.

Upstream (uvicorn 0.54 with httptools 0.9, as BentoML 1.4.40 starts it: `uvicorn.Config` with
the default `http="auto"` and no limits; checked): the request head has no size or count limit
and no deadline, and a connection that never sends a byte is never closed (the keep-alive
timer starts only after a first answer). Measured against the service before this module: a
1 MB header and 10,000 headers were answered 200; one connection streaming headers for 20 s
grew its worker from 130 MB to 2,151 MB; one 72 MB header value took 14.5 s of the worker's
CPU (httptools concatenates a value as it arrives); 9,000 silent connections left 16.7 % of new
connections served. A malformed request gets a plain-text "Invalid HTTP request received.".

`EdgeProtocol` is uvicorn's httptools protocol with those bounds: a head (request line and
headers) over `HeadLimits.max_bytes` or with more than `max_headers` fields is answered 431
and the connection closed (lingering, as below, so the client reads the 431 rather than a
reset); a head not complete within `head_timeout_s` of its first byte is answered 408 and
closed; a new connection that sends nothing is closed after uvicorn's keep-alive timeout, as an
idle one is after an answer. It reads a body off the socket only once the app asks for it, so
an unread body stays in the kernel's buffers. A body left unread by an early answer (a
refusal) may take at most `head_timeout_s` more to arrive before the connection is closed, and
is read to its declared end when that is within `max_body_bytes`: a proxy such as the
production Ingress's nginx sends a body it has buffered whole, and turns a reset into 502.
Requests pipelined behind an answer that closes the connection are dropped unanswered, as
uvicorn's plain close drops them. A malformed request is a JSON 400 naming what the parser
refused. Every refusal is reported through `on_refusal(path, status)` for the request metrics.

`install` makes it the protocol uvicorn's `auto` (and `httptools`) choice loads, in the worker
process, before BentoML builds `uvicorn.Config`. The canaries in tests/serving/workarounds/
test_http_protocol.py fail once uvicorn's own protocol bounds the head, closes silent new
connections, cancels its keep-alive timer when a connection is reset (it does on a clean close
only, and the timer keeps a closed connection alive until it fires), or BentoML passes uvicorn
an HTTP implementation of its own choice; then move whatever upstream covers to its
configuration and delete the rest.
"""

from __future__ import annotations

import asyncio
import json
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

import httptools
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

LINGER_MAX_BYTES: Final = 64 * 1024
"""Most a closing connection reads and drops of what follows a refused head, or a refused body
of unknown length or over `HeadLimits.max_body_bytes`, so its client may still see the answer;
past it the connection is closed at once. Such a body is not one a proxy would send (the
Ingress refuses it first), and Go's HTTP server, for one, drains at most 256 KiB."""


@dataclass(frozen=True)
class HeadLimits:
    """What one request head may cost a worker."""

    max_bytes: int
    """Request line and headers together, as received while the head is incomplete."""
    max_headers: int
    """Header fields in one request."""
    head_timeout_s: float
    """From the head's first byte to its last (and the most an unread body may take after an
    early answer)."""
    max_body_bytes: int = LINGER_MAX_BYTES
    """A refused request whose declared body is at most this large is read to its end before
    its connection closes. A proxy in front (the production Ingress) has buffered the whole body
    and sends it at once without reading; a close before its end resets the connection, and
    nginx answers its client 502 instead of our refusal. Larger or undeclared bodies are cut
    after `LINGER_MAX_BYTES`."""


def _ignore(_path: str | None, _status: int) -> None:
    return None


@dataclass(frozen=True)
class EdgeRules:
    """The limits, and where a refusal is reported (its request path, if known, and status)."""

    limits: HeadLimits
    on_refusal: Callable[[str | None, int], None] = _ignore


class HeadTooLargeError(Exception):
    """A request head past its limits: answered 431."""


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded, timed request head (see the module)."""

    rules: ClassVar[EdgeRules] = EdgeRules(HeadLimits(16 * 1024, 100, 5.0))

    @property
    def limits(self) -> HeadLimits:
        """This connection's limits."""
        return self.rules.limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the idle timer at once: a connection that sends nothing is closed."""
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_size = 0
        self._header_count = 0
        self._head_open = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._too_large: str | None = None
        self._lingering = False
        self._lingered = 0
        self._linger_limit = LINGER_MAX_BYTES
        self._declared_body: int | None = None
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel this connection's timers, uvicorn's keep-alive one too (it cancels that on a
        clean close only): an armed timer keeps the connection and its buffers alive."""
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; past the head's size limit, answer 431."""
        if self._lingering:  # the rest of a refused body: dropped, up to a bound
            self._lingered += len(data)
            if self._lingered > self._linger_limit:
                self._close_quietly()
            return
        if self.transport.is_closing():
            return
        counting = self._head_open
        super().data_received(data)
        if (counting or self._head_open) and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_open and self._head_bytes > self.limits.max_bytes:
                self._too_large = f"the request head exceeds {self.limits.max_bytes} bytes"
                self._refuse_head(431, self._too_large)

    # parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request's first byte: its head must be complete within the deadline, and the
        connection is no longer idle (the end of a drained body, read with this byte, may have
        armed the idle timer)."""
        super().on_message_begin()
        self._unset_keepalive_if_required()
        self._head_open = True
        self._declared_body = None
        self._head_bytes = 0
        self._head_size = REQUEST_LINE_OVERHEAD
        self._header_count = 0
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        """Count the request line."""
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count header fields; past the limit the parser stops with `HeadTooLargeError`."""
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.limits.max_headers:
            self._too_large = f"the request has more than {self.limits.max_headers} headers"
            raise HeadTooLargeError(self._too_large)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete: within its size, stop its timer, and leave any body unread
        until the app asks for it."""
        if self._head_size > self.limits.max_bytes:  # a whole head that came in one piece
            self._too_large = f"the request head exceeds {self.limits.max_bytes} bytes"
            raise HeadTooLargeError(self._too_large)
        self._head_open = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if self._has_body() and not self.transport.is_closing():
            self.flow.pause_reading()  # the app's first receive() resumes it
            if self.cycle is not None:
                lingering = _LingeringClose(self.transport, self._linger, self.cycle)
                self.cycle.transport = cast(asyncio.Transport, lingering)

    def _linger(self, cycle: RequestResponseCycle) -> None:
        """Close a connection whose request body is still arriving so that its client reads
        the answer: end our side (FIN), drop what it still sends, close at its end, after
        its declared length (within `max_body_bytes`, else `LINGER_MAX_BYTES`) or after the
        head deadline. A plain close with unread data resets the connection, and the client may
        lose the answer (a 401 sent before the body was read) to the reset. Requests pipelined
        behind `cycle`'s (answered with a close) are dropped unanswered, as a plain close drops
        them."""
        if self.transport.is_closing():
            return
        if self.pipeline:
            self.pipeline.clear()  # else the next would start, and write after our end
        elif not cycle.more_body:
            self.transport.close()
            return
        self._drain_then_close()

    def _drain_then_close(self) -> None:
        """End our side after an answer the client may still be sending into, and drop what
        it sends until its end, the bound `_linger` names, or the head deadline."""
        self._cancel_timers()
        self._lingering = True
        declared = self._declared_body
        if declared is not None and declared <= self.limits.max_body_bytes:
            self._linger_limit = max(declared, LINGER_MAX_BYTES)
        if self.cycle is not None and self.cycle.response_complete:
            self.cycle.body = bytearray()  # what was read of a refused body: nobody asks for it
        self.flow.resume_reading()
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self.transport.close()
            return
        self._arm_drain_deadline()

    def eof_received(self) -> None:
        """The client ended its side: a lingering connection is done."""
        if self._lingering:
            self._close_quietly()

    def on_message_complete(self) -> None:
        """The whole request arrived: nothing left to drain; an answered connection is idle."""
        drained = self._drain_timer is not None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        super().on_message_complete()
        if drained and not self.pipeline and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_response_complete(self) -> None:
        """Answered before the body was read: the rest may take the head deadline to arrive
        (a lingering close has its deadline already, and needs no keep-alive timer)."""
        super().on_response_complete()
        if self._lingering:
            self._unset_keepalive_if_required()
        elif self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            self._arm_drain_deadline()

    def _arm_drain_deadline(self) -> None:
        """Close at the head deadline unless the body ends first; one deadline at a time (a
        timer left behind would keep this connection, and its body, alive until it fires)."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._drain_timer = self.loop.call_later(self.limits.head_timeout_s, self._close_quietly)

    # refusals ------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused: JSON, and 431 for a large head."""
        if self._too_large is not None:
            self._refuse_head(431, self._too_large)
            return
        problem = sys.exc_info()[1]
        detail = str(problem) if isinstance(problem, httptools.HttpParserError) else msg
        self._refuse_head(400, f"malformed HTTP request: {detail}")

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._head_open and not self.transport.is_closing():
            self._refuse_head(
                408, f"the request head did not arrive within {self.limits.head_timeout_s:g} s"
            )

    def _refuse_head(self, status: int, error: str) -> None:
        self._head_open = False
        self.rules.on_refusal(self._path(), status)
        body = json.dumps({"error": error}).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINES[status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        if self.cycle is not None and not self.cycle.response_complete:
            self._close_quietly()  # a pipelined answer is under way: it must not write after EOF
        else:
            self._drain_then_close()  # a plain close with unread head bytes may reset the answer

    def _close_quietly(self) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._drain_timer = None
        self._unset_keepalive_if_required()  # uvicorn's own close cancels it only when clean

    def _path(self) -> str | None:
        url = getattr(self, "url", b"")
        if not url:
            return None
        try:
            return httptools.parse_url(url).path.decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return None

    def _has_body(self) -> bool:
        """Whether a body follows the head; its declared length is kept for a lingering close."""
        body = False
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit():
                self._declared_body = int(value)
            body |= name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
        return body


REQUEST_LINE_OVERHEAD: Final = len("OPTIONS  HTTP/1.1\r\n\r\n")
"""The request line's and the head's fixed bytes around the URL, at most."""


class _LingeringClose:
    """The transport as a request's cycle sees it: closing it lingers (`EdgeProtocol._linger`).
    It holds the protocol and the cycle weakly: the protocol holds the cycle, the cycle holds
    this, and a cycle of references would keep a closed connection and its body until the
    garbage collector's next full pass."""

    def __init__(
        self,
        transport: asyncio.Transport,
        linger: Callable[[RequestResponseCycle], None],
        cycle: RequestResponseCycle,
    ) -> None:
        self._transport = transport
        self._linger = weakref.WeakMethod(linger)
        self._cycle = weakref.ref(cycle)

    def close(self) -> None:
        """Linger instead of closing at once; close plainly if the protocol has gone."""
        linger, cycle = self._linger(), self._cycle()
        if linger is None or cycle is None:
            self._transport.close()
        else:
            linger(cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


STATUS_LINES: Final = {
    400: b"HTTP/1.1 400 Bad Request\r\n",
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}

PROTOCOL_PATH: Final = f"{__name__}:EdgeProtocol"
"""Import path of the protocol, as uvicorn's configuration names protocols."""


def install(limits: HeadLimits, on_refusal: Callable[[str | None, int], None]) -> None:
    """Make `EdgeProtocol`, with these limits, the HTTP protocol uvicorn loads in this process."""
    EdgeProtocol.rules = EdgeRules(limits, on_refusal)
    uvicorn.config.HTTP_PROTOCOLS["auto"] = PROTOCOL_PATH
    uvicorn.config.HTTP_PROTOCOLS["httptools"] = PROTOCOL_PATH


def installed() -> bool:
    """Whether uvicorn's default protocol in this process is `EdgeProtocol`."""
    protocols: dict[str, Any] = uvicorn.config.HTTP_PROTOCOLS
    return bool(protocols.get("auto") == PROTOCOL_PATH)
