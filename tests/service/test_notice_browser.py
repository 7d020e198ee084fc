"""The adverse-action notice in Debian's headless Chromium, served by a real server with auth on:
what a reader sees, the print layout, and a PDF printed from it.

Set UI_SCREENSHOTS=docs to refresh docs/notice.png on the way (a fixed record, so the picture
only changes when the notice does).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from credit_risk.decision_store import DecisionRecord, open_store
from credit_risk.decision_store.chain import ChainWriter
from credit_risk.schema import example_applicant
from credit_risk.serving.notice import TITLE, decision_date
from tests.conftest import Server, serving
from tests.decision_store.records_for_tests import decided_record
from tests.service.conftest import BROWSER_TESTS
from tests.service.test_ui_browser import save_screenshot

pytestmark = BROWSER_TESTS

TOKEN = "token-notice"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PAGE_SIZE = {"width": 900, "height": 1200}


def example_record() -> DecisionRecord:
    """The notice docs/notice.png shows: fixed id, date and versions."""
    record = decided_record(
        0.31,
        {"checking_account": 0.62, "duration_months": 0.41, "savings": 0.22, "purpose": 0.08},
        recourse=(3200.0, 18),
        application_id="loan-2026-000123",
        when=datetime(2026, 12, 2, 10, 30, tzinfo=UTC),
    )
    return record._replace(
        decision_id="3f9c2a7e5b1d4c8f9a6e0b2d7c4f1a93", model_version="credit_risk:v42"
    )


@pytest.fixture(scope="module")
def secured(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with auth on, its decision store a file holding `example_record()`."""
    workdir: Path = tmp_path_factory.mktemp("notice")
    store_url = f"sqlite:///{workdir / 'decisions.sqlite'}"
    store = open_store(store_url)
    ChainWriter(store, "docs:example").append([example_record()])
    store.close()
    with serving(workdir, model_tag, tokens=TOKEN, CREDIT_RISK_DECISION_STORE=store_url) as srv:
        yield srv


@pytest.fixture
def reader(browser: Browser) -> Iterator[Page]:
    """A page that sends the API token with every request, and fails on any page error or
    request for anything but the notice itself."""
    context = browser.new_context(viewport=PAGE_SIZE, locale="en-US", extra_http_headers=AUTH)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    requested: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda request: requested.append(request.url))
    yield page
    context.close()
    assert errors == [], "the page logged errors (a CSP violation shows up here)"
    assert all(re.search(r"/decisions/[0-9a-f]{32}/notice$", url) for url in requested), requested


def _declined(server: Server) -> dict[str, Any]:
    applicant = example_applicant() | {"credit_amount": 15_000.0, "duration_months": 60}
    r = httpx.post(
        f"{server.url}/classify",
        json=applicant | {"application_id": "loan-browser-1"},
        headers=AUTH,
        timeout=30,
    )
    answer: dict[str, Any] = r.json()
    assert answer["decision"] == "decline", answer
    return answer


def test_a_served_notice_reads_as_the_decision_and_prints_to_pdf(
    reader: Page, secured: Server
) -> None:
    answer = _declined(secured)
    response = reader.goto(f"{secured.url}/decisions/{answer['decision_id']}/notice")
    assert response is not None
    assert response.status == 200
    assert reader.title() == TITLE
    assert reader.inner_text("h1") == TITLE
    assert "declined" in reader.inner_text("#decision")
    stored = httpx.get(
        f"{secured.url}/decisions/{answer['decision_id']}", headers=AUTH, timeout=30
    ).json()
    assert reader.inner_text("#decision-date") == f"{decision_date(stored['decided_at'])} (UTC)"
    assert reader.inner_text("#decision-id") == answer["decision_id"]
    assert reader.inner_text("#application-id") == "loan-browser-1"
    reasons = reader.locator("#reasons li")
    assert reasons.count() == len(answer["reason_codes"])
    for i, reason in enumerate(answer["reason_codes"]):
        assert reasons.nth(i).inner_text().startswith(reason["description"])
    assert reader.inner_text("#score-value") == f"{answer['score']} points"
    assert reader.inner_text("#score-band") == answer["risk_band"]
    assert answer["recourse"]["description"] in reader.inner_text("#recourse")
    assert reader.inner_text("#model-version") == answer["model_version"]
    assert reader.inner_text("#policy-version").startswith("policy:")

    width = reader.evaluate("document.documentElement.scrollWidth")
    assert width <= PAGE_SIZE["width"], "no sideways scrolling"
    reader.emulate_media(media="print")
    border = reader.evaluate("getComputedStyle(document.querySelector('main')).borderTopWidth")
    assert border == "0px", "the print layout drops the on-screen sheet"

    pdf = reader.pdf(format="A4", print_background=True)  # Chromium's Page.printToPDF
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
    assert 1 <= pages <= 2, f"{pages} pages"
    assert re.search(rb"/Count\s+" + str(pages).encode(), pdf), "the page tree counts them"
    assert b"/Font" in pdf, "text, not only a picture"


def test_the_example_notice_as_the_docs_show_it(reader: Page, secured: Server) -> None:
    record = example_record()
    response = reader.goto(f"{secured.url}/decisions/{record.decision_id}/notice")
    assert response is not None
    assert response.status == 200
    assert reader.inner_text("#decision-date") == "2 December 2026 (UTC)"
    assert reader.inner_text("#model-version") == "credit_risk:v42"
    assert reader.locator("#reasons li").count() == 4
    save_screenshot(reader, "notice.png", full_page=True)
