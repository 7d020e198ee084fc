"""The service's own middleware, in-process on plain ASGI apps: size limit, bearer auth,
refusal counting and JSON answers for unknown routes (the real server: tests/service/)."""

from __future__ import annotations

import json

import pytest

from credit_risk.serving.middleware import (
    REJECTION_REASONS,
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    JsonNotFoundMiddleware,
    RejectionCounterMiddleware,
)
from credit_risk.serving.workarounds.openapi_document import REFUSALS
from tests.serving.asgi_calls import Echo, call, http_scope, responding

API = frozenset({"/classify"})

# --- BodyLimitMiddleware ---------------------------------------------------------------------


def test_a_declared_oversize_body_is_413_before_the_app_reads_it() -> None:
    echo = Echo()
    scope = http_scope(headers=[(b"content-length", b"11")])
    sent = call(BodyLimitMiddleware(echo, max_bytes=10), scope, [b"x" * 11])
    assert sent.status == 413
    assert sent.json() == {"error": "request body exceeds the limit of 10 bytes", "limit_bytes": 10}
    assert echo.scopes == []


def test_an_undeclared_body_is_counted_as_it_arrives_and_replayed_whole() -> None:
    echo = Echo()
    limited = BodyLimitMiddleware(echo, max_bytes=10)
    assert call(limited, http_scope(), [b"x" * 6, b"y" * 5]).status == 413
    assert echo.scopes == []
    sent = call(limited, http_scope(), [b"12345", b"67890"])
    assert (sent.status, sent.body) == (200, b"1234567890"), "exactly the limit passes"


def test_a_body_at_the_declared_limit_passes_and_a_bad_length_is_400() -> None:
    limited = BodyLimitMiddleware(Echo(), max_bytes=10)
    ok = call(limited, http_scope(headers=[(b"content-length", b"10")]), [b"x" * 10])
    assert ok.status == 200
    bad = call(limited, http_scope(headers=[(b"content-length", b"ten")]), [b"x"])
    assert (bad.status, bad.json()) == (400, {"error": "invalid Content-Length header"})


def test_bodiless_methods_and_other_scopes_pass_untouched() -> None:
    echo = Echo()
    limited = BodyLimitMiddleware(echo, max_bytes=1)
    assert call(limited, http_scope(method="GET"), [b"xx"]).status == 200
    assert len(echo.scopes) == 1


def test_a_client_gone_mid_body_gets_no_answer() -> None:
    echo = Echo()
    assert call(BodyLimitMiddleware(echo, max_bytes=100), http_scope(), [b"x"], hang_up=True) == []
    assert echo.scopes == []


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


# --- RejectionCounterMiddleware --------------------------------------------------------------


@pytest.mark.parametrize("status", sorted({200, 404, 500, *REJECTION_REASONS}))
def test_each_refusal_is_counted_once_under_its_reason(status: int) -> None:
    counted: list[str] = []
    app = RejectionCounterMiddleware(responding(status, b"{}"), paths=API, count=counted.append)
    assert call(app).status == status
    expected = [REJECTION_REASONS[status]] if status in REJECTION_REASONS else []
    assert counted == expected


def test_every_documented_refusal_has_a_reason() -> None:
    # the counter's promise: every refusal the API documents is counted
    assert set(REFUSALS) | {400} <= set(REJECTION_REASONS)
    assert REJECTION_REASONS[415] == "media_type"


def test_refusals_off_the_api_routes_are_not_counted() -> None:
    counted: list[str] = []
    app = RejectionCounterMiddleware(responding(429, b"{}"), paths=API, count=counted.append)
    call(app, http_scope("/readyz", method="GET"))
    assert counted == []


# --- JsonNotFoundMiddleware ------------------------------------------------------------------


def test_an_unknown_path_is_a_json_404() -> None:
    sent = call(JsonNotFoundMiddleware(responding(404, b"Not Found")), http_scope("/nope"))
    assert sent.status == 404
    assert sent.headers[b"content-type"] == b"application/json"
    assert sent.json() == {"error": "no such route: /nope"}
    assert sent.headers[b"content-length"] == str(len(sent.body)).encode()


def test_a_wrong_method_is_a_json_405_keeping_allow() -> None:
    starlette_405 = responding(405, b"Method Not Allowed", allow=b"POST")
    sent = call(JsonNotFoundMiddleware(starlette_405), http_scope("/classify", method="GET"))
    assert sent.status == 405
    assert sent.headers[b"allow"] == b"POST"
    assert sent.json() == {"error": "method GET not allowed on /classify; allowed: POST"}


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_probes_and_metrics_keep_their_plain_answers(path: str) -> None:
    sent = call(JsonNotFoundMiddleware(responding(405, b"Method Not Allowed")), http_scope(path))
    assert (sent.headers[b"content-type"], sent.body) == (b"text/plain", b"Method Not Allowed")


def test_json_answers_and_other_statuses_pass_untouched() -> None:
    ours = json.dumps({"error": "already JSON"}).encode()
    sent = call(JsonNotFoundMiddleware(responding(404, ours, b"application/json")))
    assert sent.body == ours
    plain = call(JsonNotFoundMiddleware(responding(200, b"ok")))
    assert (plain.status, plain.body) == (200, b"ok")
