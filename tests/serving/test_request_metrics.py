"""Every request counted at the edge by bounded route and status, refusals by reason."""

from __future__ import annotations

import asyncio

import pytest

from credit_risk.serving.asgi import Receive, Scope, Send
from credit_risk.serving.request_metrics import (
    CLIENT_GONE,
    REJECTION_REASONS,
    RequestMetricsMiddleware,
)
from credit_risk.serving.routes import RouteTable
from credit_risk.serving.workarounds.openapi_document import REFUSALS
from tests.serving.asgi_calls import call, call_async, http_scope, responding

ROUTES = RouteTable.of(posts=["/classify"], gets=["/ui/"])
API = frozenset({"/classify"})


class Recorder:
    def __init__(self) -> None:
        self.observed: list[tuple[str, int]] = []
        self.rejected: list[str] = []
        self.in_flight: list[tuple[str, int]] = []

    def metrics(self, app) -> RequestMetricsMiddleware:  # type: ignore[no-untyped-def]
        return RequestMetricsMiddleware(
            app,
            ROUTES,
            API,
            observe=lambda route, status, seconds: self.observed.append((route, status)),
            reject=self.rejected.append,
            in_flight=lambda route, delta: self.in_flight.append((route, delta)),
        )


@pytest.mark.parametrize("status", sorted({200, 404, 500, *REJECTION_REASONS}))
def test_every_answer_is_counted_and_api_refusals_by_reason(status: int) -> None:
    rec = Recorder()
    call(rec.metrics(responding(status, b"{}")))
    assert rec.observed == [("/classify", status)]
    assert rec.in_flight == [("/classify", 1), ("/classify", -1)], "in progress while answered"
    assert rec.rejected == ([REJECTION_REASONS[status]] if status in REJECTION_REASONS else [])


def test_unknown_paths_share_one_label_and_other_routes_count_no_refusal() -> None:
    rec = Recorder()
    app = rec.metrics(responding(404, b"{}"))
    for path in ("/a", "/b/c", "/classify/x"):
        call(app, http_scope(path))
    call(rec.metrics(responding(401, b"{}")), http_scope("/ui/", method="GET"))
    assert rec.observed == [("other", 404)] * 3 + [("/ui/", 401)]
    assert rec.rejected == []


def test_a_client_gone_before_an_answer_and_an_escaped_error_are_counted_too() -> None:
    rec = Recorder()

    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    asyncio.run(call_async(rec.metrics(silent)))
    with pytest.raises(RuntimeError):
        asyncio.run(call_async(rec.metrics(failing)))
    assert rec.observed == [("/classify", CLIENT_GONE), ("/classify", 500)]


def test_every_documented_refusal_has_a_reason() -> None:
    assert set(REFUSALS) - {431} <= set(REJECTION_REASONS), "431 never reaches the app"
    assert REJECTION_REASONS[415] == "media_type"
