"""The loan-officer form end to end: Debian's headless Chromium against the real server.

Set UI_SCREENSHOTS=docs to refresh the form's screenshots in docs/api.md (ui.png, ui-phone.png)
on the way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from credit_risk.schema import FEATURES, example_applicant
from tests.conftest import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI") == "true"
DESKTOP = {"width": 1000, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_COLOURS = 128
"""Palette for the form's screenshots: keeps the small coloured areas (64 lost the decline
red) while a full desktop page stays under ~100 KB."""
SCREENSHOTS = os.environ.get("UI_SCREENSHOTS")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not IN_CI,
        reason="no /usr/bin/chromium (make browser installs it)",
    ),
]

# An applicant the example differs from in a few places, as a loan officer would type it.
CHANGES: dict[str, Any] = {
    "checking_account": "below_0",
    "duration_months": 48,
    "credit_amount": 7250.5,
    "savings": "unknown_or_none",
    "age_years": 23,
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("CI must install Chromium before the tests: make browser")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def open_form(browser: Browser, server: Server, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "status of 400" not in msg.text
            else None
        ),
    )
    page.goto(f"{server.url}/ui")
    assert page.url == f"{server.url}/ui/"
    yield page
    context.close()
    assert errors == [], "the page logged errors (a CSP violation shows up here)"


@pytest.fixture
def form(browser: Browser, server: Server) -> Iterator[Page]:
    yield from open_form(browser, server, DESKTOP)


@pytest.fixture
def phone_form(browser: Browser, server: Server) -> Iterator[Page]:
    yield from open_form(browser, server, PHONE)


def fill(page: Page, values: dict[str, Any]) -> None:
    for name, value in values.items():
        selector = f"#f-{name}"
        if page.eval_on_selector(selector, "e => e.tagName") == "SELECT":
            page.select_option(selector, str(value))
        else:
            page.fill(selector, str(value))


def submit_and_capture(page: Page) -> tuple[Any, int]:
    """Press the submit button; return the JSON the page sent and the status it got."""
    with page.expect_response(lambda r: r.url.endswith("/classify")) as answer:
        page.click("#submit")
    response = answer.value
    return response.request.post_data_json, response.status


def save_screenshot(page: Page, name: str, *, full_page: bool) -> None:
    """Write UI_SCREENSHOTS/name as a palette PNG (a no-op unless UI_SCREENSHOTS is set)."""
    if not SCREENSHOTS:
        return
    target = Path(SCREENSHOTS) / name
    raw = target.with_suffix(".raw.png")
    page.screenshot(path=str(raw), full_page=full_page)
    with Image.open(raw) as image:
        palette = image.convert("RGB").quantize(
            colors=SCREENSHOT_COLOURS, method=Image.Quantize.FASTOCTREE
        )
        palette.save(target, optimize=True)
    raw.unlink()


def test_the_form_shows_the_decision_the_api_gives(form: Page, server: Server) -> None:
    fill(form, CHANGES)
    sent, status = submit_and_capture(form)
    expected_payload = {**example_applicant(), **CHANGES}
    assert sent == expected_payload
    assert status == 200
    decision = httpx.post(f"{server.url}/classify", json=expected_payload, timeout=30).json()

    shown = form.locator("#result-decision")
    shown.wait_for()
    assert shown.get_attribute("data-decision") == decision["decision"]
    assert shown.inner_text() == decision["decision"].capitalize()
    assert form.inner_text("#result-score") == str(decision["score"])
    assert form.inner_text("#result-band") == decision["risk_band"]
    assert form.inner_text("#result-probability") == (
        f"{100 * decision['probability_of_default']:.1f} %"
    )
    reasons = form.locator("#result-reasons li")
    assert reasons.count() == len(decision["reason_codes"])
    for i, reason in enumerate(decision["reason_codes"]):
        item = reasons.nth(i)
        assert item.get_attribute("data-feature") == reason["feature"]
        assert reason["description"] in item.inner_text()
        assert reason["code"] in item.inner_text()
    assert decision["model_version"] in form.inner_text("#result")
    reference = form.inner_text("#result-reference")
    stored = httpx.get(f"{server.url}/decisions/{reference}", timeout=30).json()
    assert stored["inputs"] == expected_payload, "the reference shown is the decision's record"

    save_screenshot(form, "ui.png", full_page=True)


def test_an_invalid_value_is_shown_next_to_its_field(form: Page, server: Server) -> None:
    # The browser's own bound would stop the submit; remove it so the API is the judge.
    form.eval_on_selector("#f-age_years", "e => e.removeAttribute('min')")
    fill(form, {"age_years": 5})
    sent, status = submit_and_capture(form)
    assert status == 400
    api = httpx.post(f"{server.url}/classify", json=sent, timeout=30)
    (issue,) = api.json()["detail"]
    assert issue["loc"][0] == "age_years"

    error = form.locator("#err-age_years")
    error.wait_for()
    assert error.inner_text() == issue["msg"]
    age = form.locator("#f-age_years")
    assert age.get_attribute("aria-invalid") == "true"
    assert "err-age_years" in (age.get_attribute("aria-describedby") or "")
    assert form.locator(".error:visible").count() == 1, "only the offending field is marked"
    assert "1 problem" in form.inner_text("#result-error")
    assert form.evaluate("document.activeElement.id") == "result", "the summary takes focus"

    form.click("#result a[href='#f-age_years']")
    assert form.evaluate("document.activeElement.id") == "f-age_years"
    fill(form, {"age_years": 40})
    _, status = submit_and_capture(form)
    assert status == 200
    form.locator("#result-decision").wait_for()
    assert error.is_hidden()
    assert age.get_attribute("aria-invalid") is None


def test_a_submit_the_browser_blocks_leaves_no_decision_on_screen(form: Page) -> None:
    _, status = submit_and_capture(form)
    assert status == 200
    form.locator("#result-decision").wait_for()

    requests: list[str] = []
    form.on("request", lambda r: requests.append(r.url))
    fill(form, {"age_years": 12})  # below the field's minimum: the browser refuses to submit
    form.click("#submit")
    form.wait_for_function("() => !document.getElementById('result-decision')")
    assert "no longer applies" in form.inner_text("#result")
    assert form.evaluate("document.getElementById('f-age_years').validity.rangeUnderflow")
    assert not [url for url in requests if url.endswith("/classify")], "nothing was sent"


def test_hints_read_like_the_selects(form: Page) -> None:
    hint = form.inner_text("#hint-checking_account")
    assert "'200_or_more'" not in hint
    assert "“200 or more” includes salary assignments" in hint
    assert form.locator("#f-checking_account option[value='200_or_more']").inner_text() == (
        "200 or more"
    )


def test_keyboard_alone_reaches_every_field_in_order_and_submits(form: Page) -> None:
    order = []
    for _ in range(len(FEATURES) + 1):
        form.keyboard.press("Tab")
        order.append(form.evaluate("document.activeElement.id"))
    assert order == [f"f-{name}" for name in FEATURES] + ["submit"]
    with form.expect_response(lambda r: r.url.endswith("/classify")) as answer:
        form.keyboard.press("Enter")
    assert answer.value.status == 200
    form.locator("#result-decision").wait_for()


def test_on_a_phone_the_form_is_one_column_without_sideways_scrolling(phone_form: Page) -> None:
    width = phone_form.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    boxes = [phone_form.locator(f"#field-{name}").bounding_box() for name in FEATURES[:3]]
    assert all(box is not None for box in boxes)
    xs = {round(box["x"]) for box in boxes if box}
    assert len(xs) == 1, "fields stack in one column"
    sent, status = submit_and_capture(phone_form)
    assert status == 200
    assert sent == example_applicant()
    phone_form.locator("#result-decision").wait_for()
    save_screenshot(phone_form, "ui-phone.png", full_page=False)
