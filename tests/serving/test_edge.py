"""The edge's layers in their places: outer ones around BentoML's app, ours inside its stack."""

from __future__ import annotations

from typing import Any

import bentoml
import pytest
import uvicorn.config
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette

from credit_risk.serving.asgi import ASGIApp, Receive, Scope, Send
from credit_risk.serving.edge import API_PATHS, EdgeService, install_edge
from credit_risk.serving.middleware import BearerAuthMiddleware, BodyFormatMiddleware
from credit_risk.serving.request_metrics import RequestMetricsMiddleware
from credit_risk.serving.routes import KnownRoutesMiddleware
from credit_risk.serving.settings import Settings
from credit_risk.serving.workarounds import http_protocol
from credit_risk.serving.workarounds.admission_gate import AdmissionGate
from credit_risk.serving.workarounds.docs_page import DocsPageMiddleware
from credit_risk.serving.workarounds.json_body import JsonBodyMiddleware
from credit_risk.serving.workarounds.metric_labels import RouteLabelledTrafficMetrics
from credit_risk.serving.workarounds.openapi_document import OpenAPIDocumentMiddleware
from credit_risk.serving.workarounds.request_deadline import DeadlineMiddleware
from credit_risk.serving.workarounds.scoring_route import ScoringRoute
from credit_risk.serving.workarounds.validation_errors import ErrorMessageMiddleware


@pytest.fixture(autouse=True)
def _own_protocol_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an entry service's app installs our HTTP protocol in uvicorn's table: undo it."""
    monkeypatch.setattr(uvicorn.config, "HTTP_PROTOCOLS", dict(uvicorn.config.HTTP_PROTOCOLS))


def _tiny_service(service_class: type[bentoml.Service[Any]] | None) -> bentoml.Service[Any]:
    class Tiny:
        @bentoml.api
        def classify(self, x: int) -> int:
            return x

    if service_class is None:
        return bentoml.service(traffic={"timeout": 7})(Tiny)
    return bentoml.service(traffic={"timeout": 7}, service_class=service_class)(Tiny)


class Outer:
    """A layer marked to wrap BentoML's whole app."""

    outside_bentoml = True

    def __init__(self, app: ASGIApp, label: str) -> None:
        self.app = app
        self.label = label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def test_outer_layers_wrap_bentomls_app_in_install_order() -> None:
    plain = _tiny_service(None).to_asgi()
    assert isinstance(plain, Starlette)
    bentoml_order = [m.cls for m in plain.user_middleware]

    service = _tiny_service(EdgeService)
    service.add_asgi_middleware(Outer, label="first")
    service.add_asgi_middleware(Outer, label="second")
    app = service.to_asgi()
    assert isinstance(app, Outer)
    assert app.label == "first"
    assert isinstance(app.app, Outer)
    assert app.app.label == "second"
    inner = app.app.app
    assert isinstance(inner, Starlette)
    ours = [m.cls for m in inner.user_middleware]
    replaced = {
        TimeoutMiddleware: DeadlineMiddleware,
        RunnerTrafficMetricsMiddleware: RouteLabelledTrafficMetrics,  # the entry service's
    }
    assert set(replaced) <= set(bentoml_order)
    assert ours == [replaced.get(cls, cls) for cls in bentoml_order]
    (deadline,) = [m for m in inner.user_middleware if m.cls is DeadlineMiddleware]
    assert deadline.kwargs == {"timeout": 7}
    assert type(deadline.kwargs["timeout"]) is int, "the 504 says '7 seconds', as BentoML's does"


def test_building_the_app_twice_keeps_every_layer() -> None:
    service = _tiny_service(EdgeService)
    service.add_asgi_middleware(Outer, label="only")
    first, second = service.to_asgi(), service.to_asgi()
    assert isinstance(first, Outer)
    assert isinstance(second, Outer)
    assert service.middlewares == [(Outer, {"label": "only"})]


def test_install_edge_puts_every_check_outside_bentoml_in_order() -> None:
    service = _tiny_service(EdgeService)
    install_edge(service, Settings.from_env({"CREDIT_RISK_MAX_IN_FLIGHT": "5"}))
    layers = []
    app: Any = service.to_asgi()
    while not isinstance(app, Starlette):
        layers.append(type(app))
        app = app.app
    assert layers == [
        RequestMetricsMiddleware,
        KnownRoutesMiddleware,
        BearerAuthMiddleware,
        BodyFormatMiddleware,
        AdmissionGate,
        ScoringRoute,
        JsonBodyMiddleware,
        DocsPageMiddleware,
    ]
    inner = [m.cls for m in app.user_middleware]
    assert inner.index(ErrorMessageMiddleware) < inner.index(OpenAPIDocumentMiddleware)
    assert http_protocol.installed(), "the entry service's worker speaks through EdgeProtocol"


def test_the_gate_gets_the_settings_and_a_runner_keeps_uvicorns_protocol() -> None:
    service = _tiny_service(EdgeService)
    install_edge(service, Settings.from_env({"CREDIT_RISK_MAX_IN_FLIGHT": "5"}))
    app: Any = service.to_asgi(is_main=False)
    assert not http_protocol.installed()
    while not isinstance(app, AdmissionGate):
        app = app.app
    assert (app.limit, app.paths) == (5, API_PATHS)
