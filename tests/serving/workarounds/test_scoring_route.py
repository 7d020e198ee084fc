"""The scoring routes outside BentoML's stack: the canary, and every refusal the route makes
itself (answers are tested end to end through a real server in tests/service/)."""

from __future__ import annotations

import json
from typing import Any

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from credit_risk.schema import Application
from credit_risk.serving.workarounds.scoring_route import (
    MAX_DETAIL,
    ROUTES,
    ScoringRoute,
    repeated_key,
)
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


def test_a_batch_of_wrong_rows_gets_a_bounded_answer_with_the_full_count() -> None:
    wrong = [dict.fromkeys(Application.model_fields, "?") for _ in range(1000)]
    _, route = _route()
    scope = http_scope("/classify_batch", headers=JSON)
    sent = call(route, scope, [json.dumps(wrong).encode()])
    assert sent.status == 400
    answer = sent.json()
    assert len(answer["detail"]) == MAX_DETAIL
    assert answer["error_count"] >= 17_000
    assert len(sent.body) < 64 * 1024
    assert answer["detail"][0]["loc"][0] == 0, "a batch's errors are located by row"
    assert "url" not in answer["detail"][0], "no third-party links in an answer"


def test_a_key_given_twice_is_named() -> None:
    applicant = sample_applicants(1, seed=1)[0]
    body = json.dumps(applicant)[:-1] + f', "age_years": {applicant["age_years"]}}}'
    _, route = _route()
    sent = call(route, http_scope(headers=JSON), [body.encode()])
    assert sent.status == 400
    assert "duplicate key 'age_years'" in sent.json()["error"]


# --- the quick check for repeated keys -----------------------------------------------------------


def _validated(body: str, single: bool) -> list[Any]:
    from credit_risk.serving.workarounds.scoring_route import BATCH, SINGLE  # noqa: PLC0415

    return [SINGLE.validate_json(body)] if single else BATCH.validate_json(body)


def test_the_quick_check_passes_bodies_that_name_each_key_once() -> None:
    rows = sample_applicants(3, seed=2)
    rows[1]["application_id"] = "loan-1"
    body = json.dumps(rows)
    assert repeated_key(body.encode(), _validated(body, single=False)) is None


def test_a_repeated_optional_key_is_caught_although_counts_balance() -> None:
    # row 0 names application_id twice, row 1 not at all: two keys for two rows
    rows = sample_applicants(2, seed=3)
    first = json.dumps(rows[0])[:-1] + ', "application_id": "a", "application_id": "b"}'
    body = f"[{first}, {json.dumps(rows[1])}]"
    found = repeated_key(body.encode(), _validated(body, single=False))
    assert found is not None
    assert "duplicate key 'application_id'" in found["error"]


def test_a_value_that_looks_like_a_key_is_not_a_repeat() -> None:
    applicant = sample_applicants(1, seed=4)[0] | {"application_id": "housing"}
    body = json.dumps(applicant)
    assert repeated_key(body.encode(), _validated(body, single=True)) is None


def test_both_scoring_paths_are_routed() -> None:
    assert ROUTES == {"/classify": True, "/classify_batch": False}


def test_a_repeat_written_with_a_space_before_its_colon_is_caught() -> None:
    applicant = sample_applicants(1, seed=5)[0]
    body = json.dumps(applicant)[:-1] + f', "age_years" : {applicant["age_years"]}}}'
    found = repeated_key(body.encode(), _validated(body, single=True))
    assert found is not None
    assert "duplicate key 'age_years'" in found["error"]
