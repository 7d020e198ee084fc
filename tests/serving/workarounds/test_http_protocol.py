"""The bounded HTTP protocol against real sockets (uvicorn in-process), and the canaries for why:
uvicorn's own protocol bounds neither the request head nor silent connections."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import _bentoml_impl.worker.service as bentoml_worker
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from credit_risk.serving.asgi import Receive, Scope, Send
from credit_risk.serving.workarounds.http_protocol import EdgeProtocol, EdgeRules, HeadLimits

BODY_LIMIT = 1 << 20
LIMITS = HeadLimits(max_bytes=2048, max_headers=10, head_timeout_s=0.5, max_body_bytes=BODY_LIMIT)
KEEP_ALIVE_S = 1
WAIT_S = 10.0
"""How long a test waits for an answer or a close it expects (the machine may be busy)."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body unless the path starts with /refuse; answers with its size (/late only
    after twice the keep-alive timeout)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/late":
        await asyncio.sleep(2 * KEEP_ALIVE_S)  # a slow answer, longer than an idle connection
    size = 0
    if not scope["path"].startswith("/refuse"):
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
    body = json.dumps({"path": scope["path"], "size": size}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    if scope["path"] == "/refuse-and-close":  # as the edge refuses a large unread body
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(protocol: type) -> Iterator[int]:
    """uvicorn with `protocol` on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(  # no log_config: uvicorn's would stop its records reaching caplog
        app,
        http=protocol,
        lifespan="off",
        log_config=None,
        log_level="critical",
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


def exchange(port: int, data: bytes, *, keep_open: bool = False) -> tuple[bytes, bool]:
    """Send `data`, read until the server closes (or goes quiet); (what came back, closed?)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        with suppress(ConnectionError):
            conn.sendall(data)
        received = b""
        conn.settimeout(0.5 if keep_open else WAIT_S)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionError:
            pass
        return received, True


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


# --- canaries: uvicorn 0.54's own protocol, as BentoML runs it --------------------------------


def test_bentoml_still_runs_uvicorn_with_its_default_http_implementation() -> None:
    source = inspect.getsource(bentoml_worker.main.callback)
    assert "uvicorn.Config(" in source
    config_call = source[source.index("uvicorn.Config(") :]
    config_call = config_call[: config_call.index("\n    )")]
    assert "http=" not in config_call, (
        "BentoML now chooses uvicorn's HTTP implementation: EdgeProtocol is installed through "
        "uvicorn's 'auto' choice (credit_risk/serving/workarounds/http_protocol.py)"
    )
    assert uvicorn.Config(app).http == "auto"


def test_uvicorn_still_takes_a_head_of_any_size_and_any_number_of_headers() -> None:
    with serving(HttpToolsProtocol) as port:
        big, _ = exchange(port, get(extra=b"X-Big: " + b"a" * 100_000 + b"\r\n"))
        many, _ = exchange(port, get(extra=b"".join(b"X-%d: 1\r\n" % i for i in range(500))))
    assert big.startswith(b"HTTP/1.1 200"), "uvicorn bounds the head now: see http_protocol.py"
    assert many.startswith(b"HTTP/1.1 200"), "uvicorn bounds the headers now"


def test_uvicorn_still_keeps_a_silent_connection_and_answers_bad_framing_in_text() -> None:
    with serving(HttpToolsProtocol) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as silent:
            silent.settimeout(KEEP_ALIVE_S + 1.5)
            with pytest.raises(TimeoutError):
                silent.recv(1)  # still open past the keep-alive timeout: uvicorn never closes it
        bad, _ = exchange(port, b"NOT HTTP\r\n\r\n")
    assert b"content-type: text/plain" in bad
    assert bad.endswith(b"Invalid HTTP request received.")


def test_uvicorn_still_leaves_its_keep_alive_timer_armed_when_a_connection_is_reset() -> None:
    protocol = HttpToolsProtocol.__new__(HttpToolsProtocol)  # only what connection_lost reads
    protocol.connections = set()
    protocol.logger = logging.getLogger("uvicorn.error")
    protocol.client = None
    protocol.cycle = None  # type: ignore[assignment]
    protocol.flow = None  # type: ignore[assignment]
    protocol.parser = None  # type: ignore[assignment]
    loop = asyncio.get_event_loop_policy().new_event_loop()
    try:
        protocol.timeout_keep_alive_task = loop.call_later(60, lambda: None)
        protocol.connection_lost(ConnectionResetError())
        assert protocol.timeout_keep_alive_task is not None, (
            "uvicorn now cancels its keep-alive timer on every close: EdgeProtocol need not "
            "(credit_risk/serving/workarounds/http_protocol.py, _cancel_timers)"
        )
        assert not protocol.timeout_keep_alive_task.cancelled()
    finally:
        loop.close()


# --- EdgeProtocol ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refusals() -> list[tuple[str | None, int]]:
    return []


@pytest.fixture(scope="module")
def edge(refusals: list[tuple[str | None, int]]) -> Iterator[int]:
    rules = EdgeRules(LIMITS, lambda path, status: refusals.append((path, status)))
    protocol = type("Bounded", (EdgeProtocol,), {"rules": rules})
    with serving(protocol) as port:
        yield port


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json(answer: bytes) -> dict[str, str]:
    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (b"X-Big: " + b"a" * 3000 + b"\r\n", "the request head exceeds 2048 bytes"),
        (b"".join(b"X-%d: 1\r\n" % i for i in range(11)), "the request has more than 10 headers"),
        # still sending when refused: the answer must not be lost to a reset
        (b"".join(b"X-%d: 1\r\n" % i for i in range(5000)), "the request has more than 10 headers"),
    ],
    ids=["size", "count", "count, still sending"],
)
def test_a_head_past_its_limits_is_431_and_the_connection_closed(
    edge: int, refusals: list[tuple[str | None, int]], extra: bytes, error: str
) -> None:
    answer, closed = exchange(edge, get("/big", extra))
    assert _status(answer) == 431
    assert b"content-type: application/json" in answer
    assert _json(answer) == {"error": error}
    assert closed
    assert ("/big", 431) in refusals


def test_a_head_streamed_without_end_is_refused_431_while_it_streams(
    edge: int, refusals: list[tuple[str | None, int]]
) -> None:
    with socket.create_connection(("127.0.0.1", edge), timeout=WAIT_S) as conn:
        conn.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        with suppress(ConnectionError):
            for _ in range(1000):  # up to 1 MB, 1 KB at a time
                conn.sendall(b"a" * 1024)
    deadline = time.monotonic() + WAIT_S
    while ("/endless", 431) not in refusals and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("/endless", 431) in refusals


def test_a_trickled_head_is_408_at_its_deadline_and_a_silent_connection_is_closed(
    edge: int, refusals: list[tuple[str | None, int]]
) -> None:
    with socket.create_connection(("127.0.0.1", edge), timeout=WAIT_S) as conn:
        started = time.monotonic()
        conn.sendall(b"GET /slow HTTP/1.1\r\n")
        answer = conn.recv(65536)
        took = time.monotonic() - started
        assert conn.recv(1) == b"", "closed after the 408"
    assert _status(answer) == 408
    assert _json(answer) == {"error": "the request head did not arrive within 0.5 s"}
    assert took >= LIMITS.head_timeout_s - 0.05  # the event loop keeps time to the millisecond
    assert ("/slow", 408) in refusals
    with socket.create_connection(("127.0.0.1", edge), timeout=WAIT_S) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b"", "closed without an answer"
        assert time.monotonic() - started >= KEEP_ALIVE_S - 0.1


def test_malformed_framing_is_a_json_400_naming_the_problem(edge: int) -> None:
    answer, closed = exchange(edge, b"NOT HTTP\r\n\r\n")
    assert _status(answer) == 400
    assert _json(answer) == {"error": "malformed HTTP request: Invalid method encountered"}
    assert closed
    answer, _ = exchange(
        edge, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert "Content-Length" in _json(answer)["error"]


def test_requests_within_the_limits_are_served_on_one_connection_in_order(edge: int) -> None:
    body = b"x" * 100_000
    post = b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    pipelined = post + get("/b", b"Connection: close\r\n")
    answer, closed = exchange(edge, pipelined)
    assert answer.count(b"HTTP/1.1 200") == 2
    assert b'{"path": "/a", "size": 100000}' in answer
    assert answer.index(b'"/a"') < answer.index(b'"/b"')
    assert closed


def test_a_body_left_unread_by_an_answer_is_drained_and_the_connection_reused(edge: int) -> None:
    refused = b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    answer, closed = exchange(edge, refused + get("/next", b"Connection: close\r\n"))
    assert answer.count(b"HTTP/1.1 200") == 2
    assert b'"/next"' in answer
    assert closed


def test_a_body_still_arriving_after_an_answer_is_cut_off_at_the_deadline(edge: int) -> None:
    with socket.create_connection(("127.0.0.1", edge), timeout=WAIT_S) as conn:
        conn.sendall(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\nxx")
        answer = conn.recv(65536)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < WAIT_S:
            try:
                conn.sendall(b"x")  # a trickle that never ends the body
                time.sleep(0.1)
            except ConnectionError:
                closed = True
                break
            conn.settimeout(0.01)
            try:
                if conn.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
    assert _status(answer) == 200
    assert closed, "the trickled remainder was not allowed to hold the connection"


def test_a_refused_head_behind_an_answer_under_way_breaks_nothing(
    edge: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    answer, closed = exchange(edge, get("/a") + b"NOT HTTP\r\n\r\n")  # pipelined
    assert closed
    assert _status(answer) in {200, 400}
    later, _ = exchange(edge, get("/later", b"Connection: close\r\n"))  # the loop is past /a
    assert _status(later) == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "the answer under way wrote after the connection was ended"


def test_a_request_answered_with_a_close_ends_the_requests_pipelined_behind_it(
    edge: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    closing = b"POST /refuse-and-close HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxx"
    behind = b"POST /refuse-behind HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nyy"
    answer, closed = exchange(edge, closing + behind)  # pipelined, the second body unfinished
    assert closed
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert b'"/refuse-and-close"' in answer
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "the request behind the close was answered after our side had ended"


def test_a_request_behind_a_drained_body_may_take_longer_than_the_idle_timeout(
    edge: int,
) -> None:
    with socket.create_connection(("127.0.0.1", edge), timeout=WAIT_S) as conn:
        conn.sendall(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\nxx")
        first = b""
        while not first.endswith(b"}"):  # answered before its body is read
            chunk = conn.recv(65536)
            assert chunk, f"closed before the first answer was complete: {first!r}"
            first += chunk
        conn.sendall(b"x" * 4998 + get("/late", b"Connection: close\r\n"))  # one write
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert _status(first) == 200
    assert b'"/late"' in answer, "closed as idle while its answer was under way"


@pytest.fixture
def long_deadline_edge() -> Iterator[tuple[int, weakref.WeakSet[EdgeProtocol], list[int]]]:
    """EdgeProtocol with a head deadline far past any wait here; every connection's protocol
    (weakly), and how many there were: what that deadline's timer keeps alive stays alive for
    the whole test."""
    made: weakref.WeakSet[EdgeProtocol] = weakref.WeakSet()
    count: list[int] = []

    class Watched(EdgeProtocol):
        rules = EdgeRules(HeadLimits(LIMITS.max_bytes, LIMITS.max_headers, 10 * WAIT_S))

        def connection_made(self, transport: Any) -> None:
            made.add(self)
            count.append(1)
            super().connection_made(transport)

    with serving(Watched) as port:
        yield port, made, count


@pytest.fixture
def patient_edge() -> Iterator[int]:
    """EdgeProtocol with the body limit and a head deadline far past any wait here: a refused
    body is read or cut by its length, never by the deadline of a busy machine."""
    limits = HeadLimits(LIMITS.max_bytes, LIMITS.max_headers, 10 * WAIT_S, BODY_LIMIT)
    with serving(type("Patient", (EdgeProtocol,), {"rules": EdgeRules(limits)})) as port:
        yield port


def _send_whole(port: int, declared: int, sent: int) -> bytes:
    """Send a request refused before its body is read and all of `sent` body bytes at once,
    reading only after, as nginx relays a body it has buffered; what came back."""
    head = b"POST /refuse-and-close HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % declared
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # little kept on our side
        conn.settimeout(WAIT_S)
        conn.connect(("127.0.0.1", port))
        conn.sendall(head + b"x" * sent)  # raises if the server closes before the end
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_a_refused_body_within_the_limit_is_read_to_its_end_so_a_proxy_gets_the_answer(
    patient_edge: int,
) -> None:
    """A close before the body's end resets the connection; nginx, still sending, answers its
    client 502 instead of the refusal."""
    answer = _send_whole(patient_edge, BODY_LIMIT, BODY_LIMIT)
    assert _status(answer) == 200
    assert b'"/refuse-and-close"' in answer


def test_a_refused_body_past_the_limit_is_cut_off(patient_edge: int) -> None:
    with pytest.raises(ConnectionError):
        _send_whole(patient_edge, 4 * BODY_LIMIT, 4 * BODY_LIMIT)


def test_a_refused_body_holds_nothing_once_its_connection_is_gone(
    long_deadline_edge: tuple[int, weakref.WeakSet[EdgeProtocol], list[int]],
) -> None:
    port, made, count = long_deadline_edge
    head = b"POST /refuse-and-close HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n"
    gc.collect()
    gc.disable()  # freed by reference counts alone: no cycle may hold a closed connection
    try:
        answer, closed = exchange(port, head + b"x" * 3_000_000)  # past what a close drains
        assert _status(answer) == 200
        assert closed
        assert len(count) == 1, "one connection, watched"
        deadline = time.monotonic() + WAIT_S  # a liveness bound, far below the head deadline
        while len(made) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(made) == 0, "a closed connection's protocol (and its body) is still referenced"
    finally:
        gc.enable()
