"""The loan-officer form end to end: Debian's headless Chromium against the real server, at
desktop and phone width, with tokens off and on.

Set UI_SCREENSHOTS=docs to refresh the form's screenshots in docs/api.md (ui.png, ui-phone.png,
ui-declined.png, ui-signin.png) on the way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from credit_risk.schema import FEATURES, example_applicant
from load_tests import harness
from tests.conftest import Server, serving
from tests.service.conftest import BROWSER_TESTS

DESKTOP = {"width": 1000, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_COLOURS = 128
"""Palette for the form's screenshots: keeps the small coloured areas (64 lost the decline
red) while a full desktop page stays under ~100 KB."""
SCREENSHOTS = os.environ.get("UI_SCREENSHOTS")

pytestmark = BROWSER_TESTS

# An applicant the example differs from in a few places, as a loan officer would type it.
CHANGES: dict[str, Any] = {
    "checking_account": "below_0",
    "duration_months": 48,
    "credit_amount": 7250.5,
    "savings": "unknown_or_none",
    "age_years": 23,
}
DECLINED: dict[str, Any] = {**CHANGES, "duration_months": 60, "credit_amount": 15000}
"""An application the model declines (checked against the API in the test)."""
TOKEN = "form-test-token"
OFFICER = "officer.schmidt"
REFERENCE = "loan-2026-004711"
VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
EXPECTED_CONSOLE = ("status of 400", "status of 401", "status of 404")
"""Refusals the page asks for and handles (validation, the auth probe, no notice route)."""
RECORD_PRINT = "window.__printed = 0; window.print = () => { window.__printed += 1; };"
"""Counts print() calls instead of opening the print dialogue (a headless browser has none)."""


@pytest.fixture(scope="module")
def token_server(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with tokens on."""
    with serving(tmp_path_factory.mktemp("form-tokens"), model_tag, tokens=TOKEN) as srv:
        yield srv


def open_form(browser: Browser, server: Server, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport, locale="en-US")
    context.add_init_script(RECORD_PRINT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not any(s in msg.text for s in EXPECTED_CONSOLE)
            else None
        ),
    )
    try:
        goto(page, server)
        yield page
    finally:
        context.close()
    assert errors == [], "the page logged errors (a CSP violation shows up here)"


def goto(page: Page, server: Server) -> None:
    """Open the form and wait until it has asked the service whether sign-in is needed."""
    page.goto(f"{server.url}/ui")
    assert page.url == f"{server.url}/ui/"
    page.wait_for_selector("body[data-ready]")


browser_tab = contextmanager(open_form)
"""`with browser_tab(browser, server, viewport) as page:` for a test with its own viewport."""


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


def officer_continues(page: Page, officer: str = OFFICER, token: str | None = None) -> None:
    """Sign in (tokens on) or name the officer (tokens off) in the page's panel."""
    page.fill("#s-officer", officer)
    if token is not None:
        page.fill("#s-token", token)
    page.click("#sign-in")
    page.locator("#session").wait_for()
    assert page.inner_text("#session-officer") == officer


def application(values: dict[str, Any], page: Page, reference: str = REFERENCE) -> dict[str, Any]:
    """Load the example, change `values`, type the reference: the application as sent."""
    page.click("#load-example")
    fill(page, {**values, "application_id": reference})
    return {**example_applicant(), **values, "application_id": reference}


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


def api(server: Server, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", timeout=30, **kwargs)


# --- tokens off ---------------------------------------------------------------------------


@VIEWPORTS
def test_the_form_opens_blank_and_sends_nothing_until_every_field_is_chosen(
    browser: Browser, server: Server, viewport: dict[str, int]
) -> None:
    with browser_tab(browser, server, viewport) as page:
        names = ["application_id", *FEATURES]
        values = page.eval_on_selector_all(
            "#applicant-form [name]", "els => els.map(e => [e.name, e.value])"
        )
        assert values == [[name, ""] for name in names], "nothing is chosen or typed"
        assert page.locator("#signin").is_visible(), "the officer is asked who they are"
        assert page.locator("#field-s-token").is_hidden(), "no token: the service has none"
        if viewport == DESKTOP:
            save_screenshot(page, "ui.png", full_page=True)

        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.click("#submit")
        page.locator("#result-error").wait_for()
        assert page.inner_text("#result-error") == (
            f"Nothing was sent: {len(names)} fields to complete or correct"
        )
        links = page.eval_on_selector_all("#result .summary a", "els => els.map(e => e.hash)")
        assert links == [f"#f-{name}" for name in names], "every missing field is named"
        assert page.locator(".error:visible").count() == len(names)
        assert page.inner_text("#err-purpose") == "Choose one of the options."
        assert page.inner_text("#err-age_years") == "Enter a value."
        assert not [url for url in requests if url.endswith("/classify")], "nothing was sent"
        if viewport == PHONE:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], "no sideways scrolling"
            boxes = [page.locator(f"#field-{name}").bounding_box() for name in FEATURES[:3]]
            assert len({round(box["x"]) for box in boxes if box}) == 1, "one column"

    refused = api(server, "POST", "/classify", json={"application_id": REFERENCE})
    assert refused.status_code == 400, "the API refuses a blank application too"
    assert {issue["loc"][0] for issue in refused.json()["detail"]} == set(FEATURES)


def test_the_form_shows_the_decision_the_api_gives_and_records_the_officer(
    form: Page, server: Server
) -> None:
    officer_continues(form)
    expected_payload = application(CHANGES, form)
    sent, status = submit_and_capture(form)
    assert sent == {**expected_payload, "officer_id": OFFICER}
    assert status == 200
    decision = api(server, "POST", "/classify", json=expected_payload).json()

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
    assert form.inner_text("#result-application") == REFERENCE
    assert form.inner_text("#result-officer") == OFFICER
    reference = form.inner_text("#result-reference")
    stored = api(server, "GET", f"/decisions/{reference}").json()
    assert stored["inputs"] == example_applicant() | CHANGES, "the reference is the record"
    assert (stored["application_id"], stored["officer_id"]) == (REFERENCE, OFFICER)
    assert "officer_id" not in decision, "the answer does not echo the officer"


@VIEWPORTS
def test_a_decline_shows_its_reference_and_prints(
    browser: Browser, server: Server, viewport: dict[str, int]
) -> None:
    with browser_tab(browser, server, viewport) as page:
        officer_continues(page)
        payload = application(DECLINED, page)
        _, status = submit_and_capture(page)
        assert status == 200
        decision = api(server, "POST", "/classify", json=payload).json()
        assert decision["decision"] == "decline", "DECLINED must be declined by the model"
        page.locator("#result-decision[data-decision='decline']").wait_for()
        reference = page.inner_text("#result-reference")
        assert len(reference) == 32
        assert page.inner_text("#result-recourse") == decision["recourse"]["description"]
        save_screenshot(
            page,
            "ui-declined.png" if viewport == DESKTOP else "ui-phone.png",
            full_page=viewport == DESKTOP,
        )

        with page.expect_response(lambda r: r.url.endswith("/notice")) as notice:
            page.click("#print-notice")
        assert notice.value.status == 200  # the service's notice, printed from a frame
        frame = page.locator("iframe.print-frame")
        frame.wait_for(state="attached")
        assert reference in (frame.get_attribute("srcdoc") or "")
        sandbox = (frame.get_attribute("sandbox") or "").split()
        assert sandbox == ["allow-same-origin", "allow-modals"], "no script runs in the notice"
        printed_frame = frame.element_handle().content_frame()
        assert printed_frame is not None
        styled = "() => document.adoptedStyleSheets.length"
        harness.wait_for(lambda: printed_frame.evaluate(styled), "the notice's styles adopted")
        assert printed_frame.evaluate("() => window.__printed") == 1, "the notice was printed"
        assert "printer" in page.inner_text("#print-status")

        page.emulate_media(media="print")
        for hidden in ("#applicant-form", "#session", "#print-notice", ".lede"):
            assert page.locator(hidden).is_hidden(), f"{hidden} is not printed"
        printed = page.inner_text("#result")
        assert printed.startswith("Credit decision")
        for fact in (reference, REFERENCE, OFFICER, decision["recourse"]["description"]):
            assert fact in printed
        for reason in decision["reason_codes"]:
            assert reason["description"] in printed
        page.emulate_media(media="screen")


def test_an_invalid_value_is_shown_next_to_its_field(form: Page, server: Server) -> None:
    application({}, form)
    # The browser's own bound would stop the submit; remove it so the API is the judge.
    form.eval_on_selector("#f-age_years", "e => e.removeAttribute('min')")
    fill(form, {"age_years": 5})
    sent, status = submit_and_capture(form)
    assert status == 400
    api_answer = api(server, "POST", "/classify", json=sent)
    (issue,) = api_answer.json()["detail"]
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


def test_a_value_out_of_bounds_is_refused_in_the_page_and_clears_the_decision(form: Page) -> None:
    application({}, form)
    _, status = submit_and_capture(form)
    assert status == 200
    form.locator("#result-decision").wait_for()

    requests: list[str] = []
    form.on("request", lambda r: requests.append(r.url))
    fill(form, {"age_years": 12, "application_id": "two words"})
    form.click("#submit")
    form.wait_for_function("() => !document.getElementById('result-decision')")
    assert form.inner_text("#result-error") == "Nothing was sent: 2 fields to complete or correct"
    assert "greater than or equal to 18" in form.inner_text("#err-age_years")
    assert form.inner_text("#err-application_id") == "1 to 64 letters, digits or . _ : -"
    assert not [url for url in requests if url.endswith("/classify")], "nothing was sent"


def test_hints_and_class_fields_read_like_the_selects(form: Page) -> None:
    hint = form.inner_text("#hint-checking_account")
    assert "'200_or_more'" not in hint
    assert "“200 or more” includes salary assignments" in hint
    assert form.locator("#f-checking_account option[value='200_or_more']").inner_text() == (
        "200 or more"
    )
    options = form.eval_on_selector_all(
        "#f-residence_since option", "els => els.map(e => e.textContent)"
    )
    assert options == [
        "Choose…",
        "under 1 year (class 1)",
        "1 to under 4 years (class 2)",
        "4 to under 7 years (class 3)",
        "7 years or more (class 4)",
    ]


def test_keyboard_alone_reaches_every_field_in_order_and_submits(form: Page) -> None:
    order = []
    for _ in range(len(FEATURES) + 4):
        form.keyboard.press("Tab")
        order.append(form.evaluate("document.activeElement.id"))
    assert order == [
        "s-officer",
        "sign-in",
        "f-application_id",
        *(f"f-{name}" for name in FEATURES),
        "submit",
    ]
    form.keyboard.press("Tab")
    assert form.evaluate("document.activeElement.id") == "load-example"
    form.keyboard.press("Enter")
    assert form.input_value("#f-age_years") == str(example_applicant()["age_years"])
    form.keyboard.press("Shift+Tab")
    with form.expect_response(lambda r: r.url.endswith("/classify")) as answer:
        form.keyboard.press("Enter")
    assert answer.value.status == 200
    form.locator("#result-decision").wait_for()


def test_clear_form_returns_to_blank(form: Page) -> None:
    application({}, form)
    form.click("button[type=reset]")
    values = form.eval_on_selector_all("#applicant-form [name]", "els => els.map(e => e.value)")
    assert set(values) == {""}


# --- tokens on ----------------------------------------------------------------------------


@VIEWPORTS
def test_with_tokens_on_the_officer_signs_in_once_per_browser_session(
    browser: Browser, token_server: Server, viewport: dict[str, int]
) -> None:
    page_html = api(token_server, "GET", "/ui/").text
    assert TOKEN not in page_html, "the page never holds a token"
    with browser_tab(browser, token_server, viewport) as page:
        assert page.locator("#signin").is_visible()
        assert page.locator("#f-s-token, #s-token").is_visible()
        assert page.locator("#applicant-form").is_hidden(), "nothing to fill in before sign-in"

        page.fill("#s-officer", OFFICER)
        page.fill("#s-token", "not-the-token")
        page.click("#sign-in")
        page.locator("#signin-error").wait_for()
        assert page.inner_text("#signin-error") == "This access token was refused."
        assert page.locator("#applicant-form").is_hidden()

        page.fill("#s-token", TOKEN)
        assert page.locator("#signin-error").is_hidden(), "typing clears the old answer"
        if viewport == DESKTOP:
            save_screenshot(page, "ui-signin.png", full_page=False)
        officer_continues(page, token=TOKEN)
        assert page.input_value("#s-token") == "", "the token leaves the input once kept"
        kept = page.evaluate("() => Object.assign({}, sessionStorage)")
        assert sorted(kept.values()) == sorted([OFFICER, TOKEN])
        assert page.evaluate("() => localStorage.length") == 0
        assert TOKEN not in page.content(), "the token is in no element of the page"

        payload = application(CHANGES, page)
        with page.expect_request(lambda r: r.url.endswith("/classify")) as request:
            page.click("#submit")
        assert request.value.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.value.post_data_json == {**payload, "officer_id": OFFICER}
        page.locator("#result-decision").wait_for()
        reference = page.inner_text("#result-reference")
        record = api(
            token_server,
            "GET",
            f"/decisions/{reference}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        assert record["officer_id"] == OFFICER

        goto(page, token_server)  # a reload in the same tab: still signed in
        assert page.locator("#session").is_visible()
        assert page.locator("#applicant-form").is_visible()

        page.click("#sign-out")
        assert page.evaluate("() => sessionStorage.length") == 0
        assert page.locator("#signin").is_visible()
        assert page.locator("#applicant-form").is_hidden()

    with browser_tab(browser, token_server, viewport) as page:  # a new browser session
        assert page.locator("#signin").is_visible(), "sign-in is not kept beyond the session"


def test_a_refused_token_mid_session_asks_for_sign_in_and_keeps_the_entries(
    browser: Browser, token_server: Server
) -> None:
    with browser_tab(browser, token_server, DESKTOP) as page:
        officer_continues(page, token=TOKEN)
        payload = application(CHANGES, page)
        page.evaluate("() => sessionStorage.setItem('credit-risk.access-token', 'revoked')")
        _, status = submit_and_capture(page)
        assert status == 401
        page.locator("#signin").wait_for()
        assert "Your entries are kept" in page.inner_text("#signin-why")
        assert page.input_value("#s-officer") == OFFICER
        officer_continues(page, token=TOKEN)
        assert page.input_value("#f-application_id") == payload["application_id"]
        sent, status = submit_and_capture(page)
        assert (sent, status) == ({**payload, "officer_id": OFFICER}, 200)
        page.locator("#result-decision").wait_for()
