"""The API's edge: every check a request passes before it is scored, installed in one call.

Order matters, and lives here only. Outermost first:

0. the HTTP protocol (credit_risk/serving/workarounds/http_protocol.py): a bounded, timed
   request head (431, 408), silent connections closed, malformed requests answered in JSON;
1. the request metrics: every request counted by bounded route and status, and timed;
2. the route table: unknown paths 404 and wrong methods 405 (JSON), never reaching BentoML;
3. bearer auth (401), from the head, before any body is read;
4. what the body declares: its length (400, 413), media type and encoding (415);
5. the admission gate: in-flight limit and body budget (429), the body read under its
   deadline (408);
6. the scoring route: POST /classify and /classify_batch validated (400 naming the fields,
   repeated keys among them), decided and answered here, never entering BentoML's stack
   (workarounds/scoring_route.py);
7. for anything else with a body, it is JSON without repeated keys (400);
8. the docs page, from the image's own files;
9. BentoML's stack (tracing, its request metrics labelled by route as ours are:
   workarounds/metric_labels.py, the request deadline: 504), and inside it ours: 400s that
   name their fields, the OpenAPI document made truthful.

A middleware class with `outside_bentoml = True` wraps the whole app BentoML builds rather than
joining its stack; `EdgeService` (the services' `service_class`) puts it there, hands BentoML's
app factory to a layer that asks for it (the runner's side of the hop,
workarounds/runner_hop.py), and in the API worker installs the HTTP protocol and takes a
listening socket of the worker's own (workarounds/listening_socket.py: connections spread over
the workers).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import bentoml
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.configuration.containers import BentoMLContainer

from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import FEATURES
from credit_risk.serving import metrics
from credit_risk.serving.middleware import BearerAuthMiddleware, BodyFormatMiddleware
from credit_risk.serving.request_metrics import RequestMetricsMiddleware
from credit_risk.serving.retrieval import DECISIONS_PATH, DECISIONS_SUBPATHS, BarePathMiddleware
from credit_risk.serving.routes import KnownRoutesMiddleware, RouteTable
from credit_risk.serving.settings import Settings
from credit_risk.serving.tuning import (
    BODY_BUDGET_BYTES,
    BODY_READ_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    REQUEST_TIMEOUT_S,
)
from credit_risk.serving.workarounds import http_protocol
from credit_risk.serving.workarounds.admission_gate import AdmissionGate, BodyRead
from credit_risk.serving.workarounds.docs_page import DOCS_PATH, DocsPageMiddleware, static_paths
from credit_risk.serving.workarounds.json_body import JsonBodyMiddleware
from credit_risk.serving.workarounds.listening_socket import spread_connections
from credit_risk.serving.workarounds.metric_labels import label_by_route
from credit_risk.serving.workarounds.openapi_document import (
    OPENAPI_DOCUMENT_PATH,
    OpenAPIDocumentMiddleware,
)
from credit_risk.serving.workarounds.request_deadline import replace_timeout
from credit_risk.serving.workarounds.runner_hop import SCORE_PATH, RowsRoute
from credit_risk.serving.workarounds.scoring_route import ScoringRoute
from credit_risk.serving.workarounds.validation_errors import ErrorMessageMiddleware

API_PATHS: Final = frozenset({"/classify", "/classify_batch", "/model_card"})
"""The routes that auth, limits and refusal counting apply to (probes and /metrics stay open)."""
SCORING_PATHS: Final = frozenset({"/classify", "/classify_batch"})
"""The routes that take a JSON body."""
PROBE_PATHS: Final = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})
"""BentoML's probes and scrape endpoint: answered as orchestrators and Prometheus expect."""
FORM_PATHS: Final = ("/ui", "/ui/")
"""The loan officer's form (credit_risk/serving/ui.py, mounted at /ui)."""
HEAD_LIMITS: Final = http_protocol.HeadLimits(
    MAX_HEAD_BYTES, MAX_HEADERS, HEAD_TIMEOUT_S, max_body_bytes=MAX_BODY_BYTES
)


@cache
def route_table() -> RouteTable:
    """Every path the API service serves, and the methods each takes."""
    return RouteTable.of(
        posts=API_PATHS,
        gets=(
            DOCS_PATH,
            OPENAPI_DOCUMENT_PATH,
            "/schema.json",
            DECISIONS_PATH,
            *FORM_PATHS,
            *static_paths(),
        ),
        plain=PROBE_PATHS,
        get_trees=(DECISIONS_PATH,),
        shapes={DECISIONS_PATH: DECISIONS_SUBPATHS},
    )


def install_edge(service: bentoml.Service[Any], settings: Settings) -> None:
    """Put every check of the edge in front of `service`'s APIs, in the order above."""
    routes = route_table()
    metrics.start_counting(API_PATHS)
    service.add_asgi_middleware(
        RequestMetricsMiddleware,
        routes=routes,
        api_paths=API_PATHS,
        observe=metrics.REQUESTS.observe,
        reject=metrics.REQUESTS.reject,
        in_flight=metrics.REQUESTS.in_flight,
    )
    service.add_asgi_middleware(KnownRoutesMiddleware, routes=routes)
    service.add_asgi_middleware(
        BearerAuthMiddleware,
        paths=API_PATHS,
        tokens=settings.tokens(),
        prefixes=(DECISIONS_PATH,),
    )
    service.add_asgi_middleware(BodyFormatMiddleware, paths=API_PATHS, max_bytes=MAX_BODY_BYTES)
    service.add_asgi_middleware(
        AdmissionGate,
        paths=API_PATHS,
        limit=settings.max_in_flight,
        body_read=BodyRead(BODY_READ_TIMEOUT_S, MAX_BODY_BYTES, BODY_BUDGET_BYTES),
    )
    service.add_asgi_middleware(
        ScoringRoute, timeout_s=REQUEST_TIMEOUT_S, max_body_bytes=MAX_BODY_BYTES
    )
    service.add_asgi_middleware(JsonBodyMiddleware, api_paths=API_PATHS, body_paths=SCORING_PATHS)
    service.add_asgi_middleware(DocsPageMiddleware)
    # Inside BentoML's stack Starlette runs the first added outermost: explain, then correct.
    service.add_asgi_middleware(ErrorMessageMiddleware)
    service.add_asgi_middleware(
        OpenAPIDocumentMiddleware, api_paths=API_PATHS, auth_required=bool(settings.tokens())
    )
    service.add_asgi_middleware(BarePathMiddleware, path=DECISIONS_PATH)


def install_runner_edge(service: bentoml.Service[Any]) -> None:
    """Let the runner take the API's rows on the lean hop (workarounds/runner_hop.py)."""
    service.add_asgi_middleware(RowsRoute, path=SCORE_PATH, method="score", columns=len(FEATURES))


def count_protocol_refusal(path: str | None, status: int) -> None:
    """Count a request the HTTP protocol refused (431, 408, 400) in the request metrics."""
    metrics.REQUESTS.count(route_table().label(path), status)


class EdgeService(bentoml.Service[Any]):  # type: ignore[misc]  # bentoml is untyped here
    """A `bentoml.Service` whose app has BentoML's timeout without its leak
    (workarounds/request_deadline.py) and, as the entry service, BentoML's request metrics
    labelled by route (workarounds/metric_labels.py), wrapped in the middleware marked
    `outside_bentoml`;
    as the entry service, its worker speaks HTTP through `EdgeProtocol`.

    Pass it as `@bentoml.service(service_class=EdgeService)`: BentoML adds user middleware
    inside its own, so `to_asgi` is the one place outside it.
    """

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        """BentoML's app for this service, its timeout replaced, inside the outer layers."""
        installed = list(self.middlewares)
        outer = [(cls, options) for cls, options in installed if _outside(cls)]
        self.middlewares[:] = [(cls, options) for cls, options in installed if not _outside(cls)]
        try:
            self.inject_config()  # what `Service.to_asgi` does, keeping the factory at hand
            factory = ServiceAppFactory(self, is_main=is_main)
            app = factory()
        finally:
            self.middlewares[:] = installed
        replace_timeout(app)
        if is_main:
            label_by_route(app, route_table().label)
        for cls, options in reversed(outer):  # the first installed ends up outermost
            wants = getattr(cls, "needs_app_factory", False)
            app = cls(app, **({**options, "factory": factory} if wants else options))
        if is_main and outer:
            http_protocol.install(HEAD_LIMITS, count_protocol_refusal)
            # as early as the worker can: the kernel spreads connections over the sockets
            # that exist, whether or not their worker is serving yet
            spread_connections(BentoMLContainer.api_server_config.backlog.get())
        return app


def _outside(cls: type) -> bool:
    return bool(getattr(cls, "outside_bentoml", False))
