"""JSON-only bodies, in-process, and the canary for why: BentoML answers a malformed list body
or malformed form data with a 500."""

from __future__ import annotations

import sys

import pytest
from starlette.testclient import TestClient

from credit_risk.serving.workarounds.json_body import EMPTY_BODY, JsonBodyMiddleware, json_problem
from tests.serving.asgi_calls import Echo, call, http_scope

API = frozenset({"/classify", "/classify_batch", "/model_card"})
BODIES = frozenset({"/classify", "/classify_batch"})


def _json_only() -> tuple[JsonBodyMiddleware, Echo]:
    echo = Echo()
    return JsonBodyMiddleware(echo, api_paths=API, body_paths=BODIES), echo


def _typed(content_type: bytes, path: str = "/classify") -> dict[str, object]:
    return http_scope(path, headers=[(b"content-type", content_type)])


# --- canary ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/many", "application/json", b'[{"count": '),
        ("/many", "application/json", b"[" * 5000),
        ("/one", "multipart/form-data; boundary=xyz", b"a=1&"),
    ],
    ids=["truncated list", "nested too deep", "broken form"],
)
def test_bentoml_still_answers_bodies_it_cannot_parse_with_500(
    upstream: TestClient, path: str, content_type: str, body: bytes
) -> None:
    r = upstream.post(path, content=body, headers={"content-type": content_type})
    assert r.status_code == 500, (
        f"BentoML now answers {r.status_code} to a body it cannot parse ({r.text}): "
        "JsonBodyMiddleware (credit_risk/serving/workarounds/json_body.py) may go"
    )


# --- JsonBodyMiddleware ------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [b"application/json", b"Application/JSON; charset=utf-8"])
def test_json_passes_with_its_body_intact(content_type: bytes) -> None:
    app, _ = _json_only()
    sent = call(app, _typed(content_type), [b'{"a"', b": 1}"])
    assert (sent.status, sent.body) == (200, b'{"a": 1}')
    assert call(app, http_scope(), [b"[]"]).body == b"[]", "no Content-Type is read as JSON"


def test_malformed_json_is_400_naming_the_position() -> None:
    app, echo = _json_only()
    sent = call(app, _typed(b"application/json"), [b'[{"age_years": '])
    assert sent.status == 400
    assert sent.json()["error"].startswith("invalid input: body: Invalid JSON: Expecting value")
    assert sent.json()["detail"][0]["loc"] == []
    assert echo.scopes == []


@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_empty_scoring_body_is_400_saying_so(path: str) -> None:
    app, echo = _json_only()
    sent = call(app, _typed(b"application/json", path), [b""])
    assert (sent.status, sent.json()) == (400, {"error": EMPTY_BODY})
    assert EMPTY_BODY.startswith("the request body is empty")
    assert echo.scopes == []


def test_an_empty_body_passes_where_none_is_needed_and_other_routes_are_untouched() -> None:
    app, echo = _json_only()
    assert call(app, _typed(b"application/json", "/model_card"), [b""]).status == 200
    assert call(app, _typed(b"application/json", "/ui"), [b"x"]).status == 200
    assert call(app, http_scope("/classify", method="GET"), [b""]).status == 200
    assert len(echo.scopes) == 3


def test_a_client_gone_mid_body_gets_no_answer() -> None:
    app, echo = _json_only()
    assert call(app, _typed(b"application/json"), [b"{"], hang_up=True) == []
    assert echo.scopes == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{}", None),
        (b"[1, 2]", None),
        (b'[{"a": 1, "b": {"a": 2}}, {"a": 3}]', None),
        (b"\xff\xfe\xfa", "Invalid JSON: the body is not UTF-8 text"),
        (b"[" * 5000, "Invalid JSON: nested too deeply"),
        (b"1" * 5000, f"Invalid JSON: a number longer than {sys.get_int_max_str_digits()} digits"),
        (b"approve me", "Invalid JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_json_problem_says_why_json_loads_would_refuse(body: bytes, problem: str | None) -> None:
    assert json_problem(body) == (None if problem is None else ("json_invalid", problem))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"age_years": 70, "housing": "own", "age_years": 17}', "age_years"),
        (b'[{"a": 1}, {"b": 1, "b": 2}]', "b"),
        (b'{"outer": {"x": 1, "x": 1}}', "x"),
    ],
)
def test_a_key_named_twice_is_400_naming_it(body: bytes, key: str) -> None:
    assert json_problem(body) == ("json_duplicate_key", f"duplicate key {key!r} in a JSON object")
    app, echo = _json_only()
    sent = call(app, _typed(b"application/json"), [body])
    assert sent.status == 400
    assert sent.json()["error"] == f"invalid input: body: duplicate key {key!r} in a JSON object"
    assert sent.json()["detail"] == [
        {"type": "json_duplicate_key", "loc": [], "msg": f"duplicate key {key!r} in a JSON object"}
    ]
    assert echo.scopes == []
