"""BentoML's request metrics labelled by route (in-process), and the canary for why: upstream
labels each request with its raw path. End to end (ids looked up on a real server leave no
series of their own): tests/service/test_retrieval.py."""

from __future__ import annotations

import secrets
from typing import Any

import bentoml
import prometheus_client
import pytest
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from starlette.applications import Starlette
from starlette.testclient import TestClient

from credit_risk.serving.edge import EdgeService, route_table
from credit_risk.serving.workarounds.metric_labels import (
    REQUESTED_PATH,
    RouteLabelledTrafficMetrics,
    _RequestedPath,
    label_by_route,
)
from tests.serving.asgi_calls import Echo, call, http_scope


def test_bentoml_still_labels_its_request_metrics_with_the_raw_path(
    upstream: TestClient,
) -> None:
    raw = f"/decisions/{secrets.token_hex(16)}"
    assert upstream.get(raw).status_code == 404
    # in-process, BentoML's series are in the process's own registry (/metrics reads the
    # multiprocess directory a server sets up)
    text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    series = [line for line in text.splitlines() if raw in line]
    assert any(f'endpoint="{raw}"' in line for line in series), (
        "BentoML no longer labels its request metrics with the raw path: delete "
        "credit_risk/serving/workarounds/metric_labels.py and label_by_route's call"
    )


def test_the_app_inside_gets_the_requested_path_back_and_no_trace_of_the_label() -> None:
    echo = Echo()
    labelled = {**http_scope("/decisions/*", method="GET"), REQUESTED_PATH: "/decisions/ab/notice"}
    assert call(_RequestedPath(echo), labelled).status == 200
    call(_RequestedPath(echo), http_scope("/classify"))
    assert [s["path"] for s in echo.scopes] == ["/decisions/ab/notice", "/classify"]
    assert all(REQUESTED_PATH not in s for s in echo.scopes)


def _tiny_service() -> bentoml.Service[Any]:
    class Tiny:
        @bentoml.api
        def classify(self, x: int) -> int:
            return x

    return bentoml.service(service_class=EdgeService)(Tiny)


def test_the_entry_service_has_bentoml_metrics_labelled_by_the_route_table() -> None:
    app = _tiny_service().to_asgi(is_main=True)
    assert isinstance(app, Starlette)
    [swapped] = [m for m in app.user_middleware if m.cls is RouteLabelledTrafficMetrics]
    assert swapped.kwargs["label"] == route_table().label
    assert swapped.kwargs["namespace"] == "bentoml_service", "BentoML's options kept"
    assert RunnerTrafficMetricsMiddleware not in [m.cls for m in app.user_middleware]
    assert route_table().label(f"/decisions/{'a' * 32}/notice") == "/decisions/*"


def test_a_service_that_is_not_the_entry_keeps_bentoml_metrics_as_they_are() -> None:
    app = _tiny_service().to_asgi(is_main=False)
    classes = [m.cls for m in app.user_middleware]
    assert RunnerTrafficMetricsMiddleware in classes
    assert RouteLabelledTrafficMetrics not in classes


def test_label_by_route_refuses_an_app_already_serving_and_skips_one_without_metrics() -> None:
    serving = Starlette(middleware=[])
    serving.middleware_stack = serving.build_middleware_stack()
    with pytest.raises(RuntimeError, match="built on the first request"):
        label_by_route(serving, str)
    quiet = Starlette(middleware=[])
    label_by_route(quiet, str)  # metrics off in the configuration: nothing to label
    assert quiet.user_middleware == []
