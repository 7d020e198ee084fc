"""The edge's head checks, in-process on plain ASGI apps: bearer auth and what a body must
declare (the real server: tests/service/)."""

from __future__ import annotations

import pytest

from credit_risk.serving.asgi import DRAINABLE_BYTES
from credit_risk.serving.middleware import BearerAuthMiddleware, BodyFormatMiddleware
from tests.serving.asgi_calls import Echo, call, http_scope

API = frozenset({"/classify"})

# --- BearerAuthMiddleware --------------------------------------------------------------------


def _auth(*tokens: str) -> BearerAuthMiddleware:
    return BearerAuthMiddleware(Echo(), paths=API, tokens=frozenset(tokens))


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"Bearer alpha", 200),
        (b"bearer beta", 200),
        (b"Bearer  beta ", 200),
        (b"Bearer gamma", 401),
        (b"Basic alpha", 401),
        (b"alpha", 401),
        (b"Bearer alph", 401),
        (b"Bearer", 401),
        (None, 401),
    ],
)
def test_only_a_configured_bearer_token_is_served(header: bytes | None, status: int) -> None:
    headers = [] if header is None else [(b"authorization", header)]
    sent = call(_auth("alpha", "beta"), http_scope(headers=headers))
    assert sent.status == status
    if status == 401:
        assert sent.json() == {"error": "missing or invalid bearer token"}
        assert sent.headers[b"www-authenticate"] == b'Bearer realm="credit-risk"'


def test_auth_off_and_open_paths_pass_without_a_token() -> None:
    assert call(_auth(), http_scope()).status == 200
    for path in ("/livez", "/readyz", "/metrics", "/ui"):
        assert call(_auth("alpha"), http_scope(path, method="GET")).status == 200


def test_a_refusal_reads_no_body_and_closes_a_connection_with_a_large_one_unread() -> None:
    echo = Echo()
    app = BearerAuthMiddleware(echo, paths=API, tokens=frozenset({"alpha"}))
    big = http_scope(headers=[(b"content-length", str(DRAINABLE_BYTES + 1).encode())])
    sent = call(app, big, [b"x" * 10])
    assert (sent.status, sent.headers.get(b"connection")) == (401, b"close")
    small = http_scope(headers=[(b"content-length", b"10")])
    assert b"connection" not in call(app, small, [b"x" * 10]).headers, "drained, kept open"
    chunked = http_scope(headers=[(b"transfer-encoding", b"chunked")])
    assert call(app, chunked, [b"x"]).headers[b"connection"] == b"close"
    assert echo.scopes == []


# --- BodyFormatMiddleware --------------------------------------------------------------------


def _format(max_bytes: int = 10) -> tuple[Echo, BodyFormatMiddleware]:
    echo = Echo()
    return echo, BodyFormatMiddleware(echo, paths=API, max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ([(b"content-length", b"11")], 413, "exceeds the limit of 10 bytes"),
        ([(b"content-length", b"ten")], 400, "invalid Content-Length header"),
        ([(b"content-type", b"application/x-www-form-urlencoded")], 415, "application/json"),
        ([(b"content-type", b"text/plain; charset=utf-8")], 415, "'text/plain'"),
        ([(b"content-encoding", b"gzip")], 415, "Content-Encoding 'gzip'"),
        ([(b"content-encoding", b"gzip, identity")], 415, "uncompressed"),
    ],
)
def test_a_body_the_api_cannot_take_is_refused_from_the_head(
    headers: list[tuple[bytes, bytes]], status: int, says: str
) -> None:
    echo, app = _format()
    sent = call(app, http_scope(headers=headers), [b"x"])
    assert sent.status == status
    assert says in sent.json()["error"]
    assert echo.scopes == [], "refused before the app or a read"
    if "content-encoding" in says.lower():
        assert sent.headers[b"accept-encoding"] == b"identity"
        assert sent.json()["accepted"] == ["identity"]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"content-length", b"10")],
        [(b"content-type", b"application/json; charset=utf-8")],
        [(b"content-type", b"Application/JSON")],
        [(b"content-encoding", b"identity")],
    ],
)
def test_json_unencoded_or_unlabelled_bodies_within_the_limit_pass(
    headers: list[tuple[bytes, bytes]],
) -> None:
    _, app = _format()
    assert call(app, http_scope(headers=headers), [b"x" * 10]).status == 200


def test_bodiless_methods_and_other_paths_pass_untouched() -> None:
    echo, app = _format(max_bytes=1)
    gzip = [(b"content-encoding", b"gzip"), (b"content-length", b"99")]
    assert call(app, http_scope(method="GET", headers=gzip)).status == 200
    assert call(app, http_scope("/ui/", headers=gzip)).status == 200
    assert len(echo.scopes) == 2
