"""The route table at the edge: unknown paths and wrong methods answered in JSON, labels bounded."""

from __future__ import annotations

import pytest

from credit_risk.serving.edge import API_PATHS, PROBE_PATHS, route_table
from credit_risk.serving.routes import OTHER, KnownRoutesMiddleware, RouteTable
from tests.serving.asgi_calls import Echo, call, http_scope

ROUTES = RouteTable.of(posts=["/classify"], gets=["/", "/docs.json"], plain=["/livez"])


def test_an_unknown_path_is_a_json_404_that_never_reaches_the_app() -> None:
    echo = Echo()
    sent = call(KnownRoutesMiddleware(echo, ROUTES), http_scope("/wp-admin/x.php", method="GET"))
    assert (sent.status, sent.json()) == (404, {"error": "no such route: /wp-admin/x.php"})
    assert sent.headers[b"content-type"] == b"application/json"
    assert echo.scopes == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS"])
def test_a_method_the_route_does_not_take_is_a_json_405_with_allow(method: str) -> None:
    echo = Echo()
    sent = call(KnownRoutesMiddleware(echo, ROUTES), http_scope("/classify", method=method))
    assert sent.status == 405
    assert sent.headers[b"allow"] == b"POST"
    assert sent.json() == {"error": f"method {method} not allowed on /classify; allowed: POST"}
    assert echo.scopes == []


def test_served_routes_and_plain_paths_pass_whatever_the_method_of_a_plain_one() -> None:
    echo = Echo()
    guard = KnownRoutesMiddleware(echo, ROUTES)
    assert call(guard, http_scope("/classify")).status == 200
    assert call(guard, http_scope("/", method="HEAD")).status == 200
    assert call(guard, http_scope("/livez", method="POST")).status == 200, "plain: untouched"
    assert len(echo.scopes) == 3


def test_labels_are_the_served_paths_or_other() -> None:
    assert ROUTES.label("/classify") == "/classify"
    assert ROUTES.label("/classify/") == OTHER
    assert ROUTES.label("/%00") == OTHER
    assert ROUTES.label(None) == OTHER


def test_the_service_table_serves_the_api_probes_docs_form_and_swagger_files() -> None:
    table = route_table()
    assert {path for path, methods in table.methods.items() if "POST" in methods} == API_PATHS
    assert table.plain >= PROBE_PATHS
    for path in ("/", "/docs.json", "/ui/", "/static_content/swagger-ui-bundle.js"):
        assert "GET" in table.methods[path], path
    assert len(table.methods) < 40, "a bounded set of labels"


def test_only_the_decision_paths_the_retrieval_routes_serve_pass_the_edge() -> None:
    table, some_id = route_table(), "a" * 32
    for served in ("/decisions/", f"/decisions/{some_id}", f"/decisions/{some_id}/notice"):
        assert table.allowed(served) == frozenset({"GET", "HEAD"}), served
        assert table.label(served) == "/decisions/*", served
    assert table.allowed("/decisions/not-an-id") is not None, "its route names the bad id"
    for unknown in (f"/decisions/{some_id}/other", f"/decisions/{some_id}/notice/", "/decisions//"):
        assert table.allowed(unknown) is None, unknown
        assert table.label(unknown) == OTHER, unknown
    sent = call(KnownRoutesMiddleware(Echo(), table), http_scope("/decisions/x/y", method="GET"))
    assert (sent.status, sent.json()) == (404, {"error": "no such route: /decisions/x/y"})
