"""The scoring routes outside BentoML's stack: the canary, and every refusal the route makes
itself (answers are tested end to end through a real server in tests/service/)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from credit_risk.schema import Application
from credit_risk.serving.classify import Answer
from credit_risk.serving.validation_lane import ValidationLane
from credit_risk.serving.workarounds.scoring_route import ROUTES, ScoringRoute
from load_tests.applicants import sample_applicants
from tests.serving.asgi_calls import Echo, Sent, call, call_async, http_scope
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


def test_a_large_body_that_cannot_have_the_lane_in_time_is_429_with_retry_after() -> None:
    async def scenario() -> Sent:
        lane = ValidationLane(max_wait_s=0.05)
        route = ScoringRoute(Echo(), timeout_s=10, max_body_bytes=1 << 20, lane=lane)
        body = json.dumps(sample_applicants(100, seed=1)).encode()
        async with lane.turn(len(body)):  # another large body is being validated
            sent = await call_async(route, http_scope("/classify_batch", headers=JSON), [body])
        return Sent(sent)

    sent = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert sent.status == 429
    assert sent.headers[b"retry-after"] == b"1"
    assert sent.json()["error"] == (
        "server busy: this worker is validating other large bodies; retry later"
    )


def test_a_refused_large_body_paces_the_next_one() -> None:
    # With a tiny share, the pause after the first refusal is far over the longest wait.
    wrong = json.dumps([dict.fromkeys(Application.model_fields, "?")] * 100).encode()

    async def scenario() -> list[int]:
        lane = ValidationLane(share=1e-6, max_wait_s=1.0)
        route = ScoringRoute(Echo(), timeout_s=10, max_body_bytes=1 << 20, lane=lane)
        scope = http_scope("/classify_batch", headers=JSON)
        return [Sent(await call_async(route, scope, [wrong])).status for _ in range(2)]

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == [400, 429]


class _Decides:
    """Stands in for the service's classifier: answers 200 to whatever it is given."""

    async def answer(self, found: list[Application], *, single: bool) -> Answer:
        return Answer(200, b"[]")


def test_a_valid_large_body_does_not_pace_the_next_one() -> None:
    # With the same tiny share as above, a charged valid body would make the next one a 429.
    body = json.dumps(sample_applicants(100, seed=1)).encode()

    async def scenario() -> list[int]:
        lane = ValidationLane(share=1e-6, max_wait_s=1.0)
        route = ScoringRoute(Echo(), timeout_s=10, max_body_bytes=1 << 20, lane=lane)
        route._service = SimpleNamespace(classifier=_Decides())
        scope = http_scope("/classify_batch", headers=JSON)
        return [Sent(await call_async(route, scope, [body])).status for _ in range(2)]

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == [200, 200]


def test_a_key_given_twice_is_named() -> None:
    applicant = sample_applicants(1, seed=1)[0]
    body = json.dumps(applicant)[:-1] + f', "age_years": {applicant["age_years"]}}}'
    _, route = _route()
    sent = call(route, http_scope(headers=JSON), [body.encode()])
    assert sent.status == 400
    assert "duplicate key 'age_years'" in sent.json()["error"]


def test_both_scoring_paths_are_routed() -> None:
    assert ROUTES == {"/classify": True, "/classify_batch": False}
