"""Nothing the service serves makes a browser call anyone else: a crawl of every page, document
and asset it serves, and a real browser's requests while it shows them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pytest

from credit_risk.serving.workarounds.docs_page import STATIC_PREFIX
from tests.conftest import Server

pytestmark = pytest.mark.integration

START = ("/", "/docs.json", "/ui/")
ATTRIBUTE = re.compile(r"""\b(?:src|href|action|poster|data)\s*=\s*["']([^"']+)["']""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)|@import\s+["']([^"']+)["']""", re.I)
STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>|\bstyle\s*=\s*\"([^\"]*)\"", re.I | re.S)
"""A page's CSS: its style blocks and attributes (an inline script's `new URL(...)` is no CSS)."""
ABSOLUTE = re.compile(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s"'<>)\\]*""", re.I)
VENDORED = frozenset(
    {
        f"{STATIC_PREFIX}swagger-ui-bundle.js",
        f"{STATIC_PREFIX}swagger-ui-standalone-preset.js",
        f"{STATIC_PREFIX}marked.min.js",
    }
)
"""Swagger UI's own bundles, shipped by BentoML: their code holds URL strings (documentation
links, defaults such as the online validator our page switches off) that are never requested
as we configure them. They are not scanned for strings; the browser test below shows what
they really request."""


def _strings(document: Any) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _strings(value)
    elif isinstance(document, list):
        for value in document:
            yield from _strings(value)


def _references(path: str, content_type: str, text: str) -> tuple[list[str], list[str]]:
    """(references to follow, absolute URLs found) in one served resource."""
    if content_type.startswith("text/html"):
        css = "\n".join(a or b for a, b in STYLE.findall(text))
        refs = ATTRIBUTE.findall(text) + [a or b for a, b in CSS_URL.findall(css)]
        found = [r for r in refs if ABSOLUTE.match(r)]
        found += [u for u in ABSOLUTE.findall(text) if not u.startswith("//www.w3.org")]
        return refs, found
    if content_type.startswith("text/css"):
        refs = [a or b for a, b in CSS_URL.findall(text)]
        return refs, [r for r in refs if ABSOLUTE.match(r)]
    if content_type.startswith("application/json"):
        return [], [u for s in _strings(json.loads(text)) for u in ABSOLUTE.findall(s)]
    if "javascript" in content_type and path not in VENDORED:
        return [], ABSOLUTE.findall(text)
    return [], []


def test_every_page_document_and_asset_references_only_the_service(server: Server) -> None:
    origin = server.url
    queue, seen, external = [origin + p for p in START], set(), []
    with httpx.Client(timeout=30) as client:
        while queue:
            url = urldefrag(queue.pop())[0]
            if url in seen:
                continue
            seen.add(url)
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            path = urlsplit(url).path
            refs, found = _references(path, response.headers["content-type"], response.text)
            external += [f"{path}: {u}" for u in found]
            for ref in refs:
                if ref.startswith(("data:", "#", "javascript:", "mailto:")) or ABSOLUTE.match(ref):
                    continue
                queue.append(urljoin(url, ref))
    print(f"\ncrawled {len(seen)} resources: {sorted(urlsplit(u).path for u in seen)}")
    assert external == []
    assert {"/", "/docs.json", "/ui/", f"{STATIC_PREFIX}swagger-ui-bundle.js"} <= {
        urlsplit(u).path for u in seen
    }


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make browser)")
def test_a_browser_showing_the_pages_requests_nothing_from_another_host(server: Server) -> None:
    """Served under a host name that is not localhost: Swagger UI skips its online validator
    badge on localhost only, so a test on 127.0.0.1 alone would miss it."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (the browser tests' import)

    from tests.service.conftest import CHROMIUM_ARGS  # noqa: PLC0415

    port = urlsplit(server.url).port
    origin = f"http://credit-risk.test:{port}"
    rules = "MAP credit-risk.test 127.0.0.1, MAP * ~NOTFOUND"
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"],
            headless=True,
        )
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{origin}/", wait_until="networkidle")
        page.wait_for_selector(".opblock", timeout=30_000)  # the operations are rendered
        page.goto(f"{origin}/ui/", wait_until="networkidle")
        browser.close()
    others = [u for u in requested if not u.startswith((origin + "/", "data:"))]
    print(f"\nthe browser requested {len(requested)} URLs, {len(others)} elsewhere")
    assert others == []
    assert f"{origin}/docs.json" in requested
