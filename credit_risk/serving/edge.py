"""The API's edge: every check a request passes before it is scored, installed in one call.

Order matters, and lives here only. Outermost first, outside BentoML's own stack:

1. bearer auth (401 before any body is read);
2. the admission gate (a cheap 429 past the in-flight limit, and the body read under its
   deadline: 408);
3. the scoring route: POST /classify and /classify_batch validated, scored and answered here
   (workarounds/scoring_route.py);

then, for every other request, BentoML's stack (tracing, request metrics, its timeout) and ours
inside it: count refusals, explain 400s field by field, JSON for unknown routes and methods, the
body-size limit (413), JSON-only bodies (415/400), and the OpenAPI document made truthful.

A middleware class with `outside_bentoml = True` wraps the whole app BentoML builds rather than
joining its stack; `EdgeService` (the services' `service_class`) puts it there.
"""

from __future__ import annotations

from typing import Any, Final

import bentoml
from _bentoml_impl.server.app import ServiceAppFactory

from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import FEATURES
from credit_risk.serving import metrics
from credit_risk.serving.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    JsonNotFoundMiddleware,
    RejectionCounterMiddleware,
)
from credit_risk.serving.settings import Settings
from credit_risk.serving.tuning import BODY_READ_TIMEOUT_S, REQUEST_TIMEOUT_S
from credit_risk.serving.workarounds.admission_gate import AdmissionGate, BodyRead
from credit_risk.serving.workarounds.json_body import JsonBodyMiddleware
from credit_risk.serving.workarounds.openapi_document import OpenAPIDocumentMiddleware
from credit_risk.serving.workarounds.request_deadline import replace_timeout
from credit_risk.serving.workarounds.runner_hop import SCORE_PATH, RowsRoute
from credit_risk.serving.workarounds.scoring_route import ScoringRoute
from credit_risk.serving.workarounds.validation_errors import ErrorMessageMiddleware

API_PATHS: Final = frozenset({"/classify", "/classify_batch", "/model_card"})
"""The routes that auth, limits and refusal counting apply to (probes and /metrics stay open)."""
SCORING_PATHS: Final = frozenset({"/classify", "/classify_batch"})
"""The routes that take a JSON body."""


def install_edge(service: bentoml.Service[Any], settings: Settings) -> None:
    """Put every check of the edge in front of `service`'s APIs, in the order above."""
    service.add_asgi_middleware(
        BearerAuthMiddleware,
        paths=API_PATHS,
        tokens=settings.api_tokens,
        on_refuse=metrics.REJECTED.labels(reason="auth").inc,
    )
    service.add_asgi_middleware(
        AdmissionGate,
        paths=API_PATHS,
        limit=settings.max_in_flight,
        on_refuse=metrics.REJECTED.labels(reason="overload").inc,
        body_read=BodyRead(
            BODY_READ_TIMEOUT_S,
            MAX_BODY_BYTES,
            metrics.REJECTED.labels(reason="body_timeout").inc,
        ),
    )
    service.add_asgi_middleware(
        ScoringRoute,
        timeout_s=REQUEST_TIMEOUT_S,
        max_body_bytes=MAX_BODY_BYTES,
        count=count_refusal,
    )
    # Inside BentoML's stack Starlette runs the first added outermost: count, then explain,
    # then refuse.
    service.add_asgi_middleware(
        RejectionCounterMiddleware,
        paths=API_PATHS,
        count=count_refusal,
    )
    service.add_asgi_middleware(ErrorMessageMiddleware)
    service.add_asgi_middleware(JsonNotFoundMiddleware)
    service.add_asgi_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    # after the size limit: checking that the body is JSON buffers it
    service.add_asgi_middleware(JsonBodyMiddleware, api_paths=API_PATHS, body_paths=SCORING_PATHS)
    service.add_asgi_middleware(OpenAPIDocumentMiddleware, api_paths=API_PATHS)


def install_runner_edge(service: bentoml.Service[Any]) -> None:
    """Let the runner take the API's rows on the lean hop (workarounds/runner_hop.py)."""
    service.add_asgi_middleware(RowsRoute, path=SCORE_PATH, method="score", columns=len(FEATURES))


def count_refusal(reason: str) -> None:
    """Count a request refused before scoring, by reason."""
    metrics.REJECTED.labels(reason=reason).inc()


class EdgeService(bentoml.Service[Any]):  # type: ignore[misc]  # bentoml is untyped here
    """A `bentoml.Service` whose app has BentoML's timeout without its leak
    (workarounds/request_deadline.py), wrapped in the middleware marked `outside_bentoml`.

    Pass it as `@bentoml.service(service_class=EdgeService)`: BentoML adds user middleware
    inside its own, so `to_asgi` is the one place outside it. It builds BentoML's app the way
    `Service.to_asgi` does, through `ServiceAppFactory`, so that a layer marked
    `needs_app_factory` can reach BentoML's batching dispatcher (workarounds/runner_hop.py).
    """

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        """BentoML's app for this service, its timeout replaced, inside the outer layers."""
        installed = list(self.middlewares)
        outer = [(cls, options) for cls, options in installed if _outside(cls)]
        self.middlewares[:] = [(cls, options) for cls, options in installed if not _outside(cls)]
        try:
            self.inject_config()
            factory = ServiceAppFactory(self, is_main=is_main)
            app = factory()
        finally:
            self.middlewares[:] = installed
        replace_timeout(app)
        for cls, options in reversed(outer):  # the first installed ends up outermost
            wants = getattr(cls, "needs_app_factory", False)
            app = cls(app, **({**options, "factory": factory} if wants else options))
        return app


def _outside(cls: type) -> bool:
    return bool(getattr(cls, "outside_bentoml", False))
