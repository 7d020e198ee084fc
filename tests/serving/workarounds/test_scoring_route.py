"""The scoring routes outside BentoML's stack: the canary, and every refusal the route makes
itself (answers are tested end to end through a real server in tests/service/)."""

from __future__ import annotations

import json

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from credit_risk.schema import Application
from credit_risk.serving.workarounds.scoring_route import ROUTES, ScoringRoute
from load_tests.applicants import sample_applicants
from tests.serving.asgi_calls import Echo, call, http_scope
from tests.serving.workarounds.conftest import Upstream

JSON = [(b"content-type", b"application/json")]


def _route(max_body_bytes: int = 1 << 20) -> tuple[Echo, ScoringRoute]:
    echo = Echo()
    return echo, ScoringRoute(echo, timeout_s=10, max_body_bytes=max_body_bytes)


# --- canary -------------------------------------------------------------------------------------


def test_bentoml_still_traces_and_meters_every_request_inside_its_stack() -> None:
    # What the route saves: with no tracing exporter configured, BentoML's app still wraps every
    # request in an OpenTelemetry span and its request metrics, and runs each user middleware
    # as a further layer inside them. When this fails, measure BentoML's own path against the
    # floor again (make bench) and delete the route if it comes close.
    layers = [m.cls for m in Upstream.to_asgi().user_middleware]
    assert OpenTelemetryMiddleware in layers
    assert RunnerTrafficMetricsMiddleware in layers


# --- what the route leaves to BentoML -----------------------------------------------------------


def test_other_paths_and_methods_pass_through() -> None:
    for scope in (http_scope("/model_card"), http_scope("/classify", method="GET")):
        echo, route = _route()
        sent = call(route, scope, [b"{}"])
        assert sent.status == 200
        assert echo.scopes == [scope]


# --- refusals ----------------------------------------------------------------------------------


def test_a_body_that_is_not_json_is_415() -> None:
    _, route = _route()
    sent = call(route, http_scope(headers=[(b"content-type", b"text/csv")]), [b"a,b"])
    assert sent.status == 415
    assert sent.json()["accepted"] == ["application/json"]


def test_an_empty_body_is_400_saying_so() -> None:
    _, route = _route()
    sent = call(route, http_scope(headers=JSON), [b""])
    assert sent.status == 400
    assert sent.json()["error"].startswith("the request body is empty")


def test_a_body_over_the_limit_is_413() -> None:
    _, route = _route(max_body_bytes=100)
    sent = call(route, http_scope(headers=JSON), [b" " * 60, b" " * 60])
    assert sent.status == 413
    assert sent.json()["limit_bytes"] == 100


def test_malformed_json_is_400_naming_the_body() -> None:
    _, route = _route()
    sent = call(route, http_scope(headers=JSON), [b'{"age_years": '])
    assert sent.status == 400
    assert sent.json()["error"].startswith("invalid input: body: ")


def test_a_batch_of_wrong_rows_is_answered_with_its_first_invalid_row() -> None:
    wrong = [dict.fromkeys(Application.model_fields, "?") for _ in range(1000)]
    _, route = _route()
    scope = http_scope("/classify_batch", headers=JSON)
    sent = call(route, scope, [json.dumps(wrong).encode()])
    assert sent.status == 400
    answer = sent.json()
    assert answer["error_count"] == len(Application.model_fields)
    assert answer["detail"][0]["loc"][0] == 0, "a batch's errors are located by row"


def test_a_key_given_twice_is_named() -> None:
    applicant = sample_applicants(1, seed=1)[0]
    body = json.dumps(applicant)[:-1] + f', "age_years": {applicant["age_years"]}}}'
    _, route = _route()
    sent = call(route, http_scope(headers=JSON), [body.encode()])
    assert sent.status == 400
    assert "duplicate key 'age_years'" in sent.json()["error"]


def test_both_scoring_paths_are_routed() -> None:
    assert ROUTES == {"/classify": True, "/classify_batch": False}
