"""The docs page from the image's own files, and the canary for why: BentoML's page loads a
third-party tracker."""

from __future__ import annotations

import re
from pathlib import Path

import _bentoml_impl.server

from credit_risk.serving.workarounds.docs_page import (
    DOCS_PATH,
    STATIC_PREFIX,
    DocsPageMiddleware,
    static_paths,
)
from tests.serving.asgi_calls import Echo, call, http_scope

EXTERNAL = re.compile(rb"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


def test_bentomls_docs_page_still_loads_google_tag_manager() -> None:
    page = (Path(_bentoml_impl.server.__file__).parent / "main-openapi.html").read_bytes()
    assert b"googletagmanager.com" in page, (
        "BentoML's docs page no longer loads Google Tag Manager: if it loads nothing from "
        "another host, delete credit_risk/serving/workarounds/docs_page.py"
    )


def test_our_page_references_only_the_services_own_files() -> None:
    sent = call(DocsPageMiddleware(Echo()), http_scope(DOCS_PATH, method="GET"))
    assert sent.status == 200
    assert sent.headers[b"content-type"].startswith(b"text/html")
    assert EXTERNAL.findall(sent.body) == []
    assert b"validatorUrl: null" in sent.body, "Swagger UI's online validator badge is off"
    referenced = re.findall(rb'(?:src|href)="\./([^"]+)"', sent.body)
    assert referenced
    for ref in referenced:
        assert "/" + ref.decode() in static_paths(), ref


def test_head_answers_without_a_body_and_other_requests_pass() -> None:
    echo = Echo()
    head = call(DocsPageMiddleware(echo), http_scope(DOCS_PATH, method="HEAD"))
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers[b"content-length"]) > 0
    call(DocsPageMiddleware(echo), http_scope(STATIC_PREFIX + "index.css", method="GET"))
    call(DocsPageMiddleware(echo), http_scope(DOCS_PATH, method="POST"))
    assert len(echo.scopes) == 2
