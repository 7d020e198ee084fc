"""BentoML's request metrics labelled by route, not by the raw path.

Upstream (BentoML 1.4.40, checked): the service app's first middleware,
`RunnerTrafficMetricsMiddleware` (bentoml/_internal/server/http/instruments.py), labels
`bentoml_service_request_total`, `..._request_duration_seconds` and `..._request_in_progress`
with `endpoint=scope["path"]`, the path as requested. The edge keeps unknown paths out of
BentoML (serving/routes.py), but `/decisions/<id>` and `/decisions/<id>/notice` are served: each
id looked up was 20 series of its own, for the life of the process (measured: 21 ids looked up,
each with its notice, took /metrics from 202 to 1,061 series, 840 of them naming an id;
tests/service/test_retrieval.py). `RouteLabelledTrafficMetrics` is BentoML's middleware given
the request's route label (`/decisions/*`, the label our own request metrics use) in place of
the path; the app inside it gets the request as it came. The canary in
tests/serving/workarounds/test_metric_labels.py fails once upstream stops labelling the raw
path; then delete this module and `label_by_route`'s call in serving/edge.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware

from credit_risk.serving.asgi import ASGIApp, Receive, Scope, Send

REQUESTED_PATH: Final = "credit_risk.requested_path"
"""Scope key carrying the requested path past BentoML's metrics to the app inside them."""


class _RequestedPath:
    """The app inside BentoML's metrics, given the path as requested again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Put the requested path back, if the metrics saw a label in its place."""
        requested = scope.get(REQUESTED_PATH)
        if requested is not None:
            scope = {k: v for k, v in scope.items() if k != REQUESTED_PATH}
            scope["path"] = requested
        await self.app(scope, receive, send)


class RouteLabelledTrafficMetrics(RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics, with `endpoint` the route label of the path."""

    def __init__(self, app: ASGIApp, *, label: Callable[[str], str], **options: Any) -> None:
        super().__init__(_RequestedPath(app), **options)
        self.label = label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Show BentoML's metrics the label as the path; pass the request on unchanged."""
        path = scope.get("path")
        if scope["type"] != "http" or path is None or self.label(path) == path:
            await super().__call__(scope, receive, send)
            return
        labelled = {**scope, "path": self.label(path), REQUESTED_PATH: path}
        await super().__call__(labelled, receive, send)


def label_by_route(app: Starlette, label: Callable[[str], str]) -> None:
    """Swap BentoML's request metrics in `app` for `RouteLabelledTrafficMetrics`, same place,
    same options (before the first request builds the middleware stack); with metrics off in
    the configuration there is nothing to swap."""
    if app.middleware_stack is not None:
        raise RuntimeError("too late: the middleware stack is built on the first request")
    found = [
        i
        for i, m in enumerate(app.user_middleware)
        if m.cls is cast(object, RunnerTrafficMetricsMiddleware)
    ]
    if not found:
        return  # metrics turned off in the configuration: nothing to label
    if len(found) > 1:
        raise RuntimeError(f"expected BentoML's one request-metrics middleware, found {len(found)}")
    options = dict(app.user_middleware[found[0]].kwargs)
    labelled = cast(Any, RouteLabelledTrafficMetrics)  # BentoML types its ASGI apps its own way
    app.user_middleware[found[0]] = Middleware(labelled, label=label, **options)
