"""The loan-officer form page, rendered without a server: it must mirror the Applicant schema."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx
import pytest

from credit_risk.schema import (
    APPLICATION_ID_PATTERN,
    CATEGORICAL_FEATURES,
    CATEGORIES,
    CLASSES_KEY,
    FEATURES,
    NUMERIC_FEATURES,
    Applicant,
    Application,
    example_applicant,
)
from credit_risk.serving.ui import (
    FIELD_LABELS,
    OPTION_LABELS,
    PLACEHOLDER,
    FormField,
    app,
    field_label,
    option_label,
    render_page,
)

CLASS_FIELDS = tuple(
    name
    for name, prop in Applicant.model_json_schema()["properties"].items()
    if CLASSES_KEY in prop
)
"""Integer fields whose codes the schema says in words: the form shows them as selects."""


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    select: str = ""  # for an option: the name of its select


@dataclass
class PageModel(HTMLParser):
    """The elements the tests care about, in document order."""

    elements: list[Element] = field(default_factory=list)
    _open: list[Element] = field(default_factory=list)
    tags: tuple[str, ...] = (
        "input",
        "select",
        "option",
        "label",
        "button",
        "meta",
        "html",
        "section",
        "form",
        "p",
        "script",
        "style",
    )

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.tags:
            element = Element(tag, {k: v or "" for k, v in attrs})
            if tag == "option" and self._open and self._open[-1].tag == "select":
                element.select = self._open[-1].attrs["name"]
            self.elements.append(element)
            if tag not in {"input", "meta"}:
                self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1].tag == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def by_id(self, id_: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == id_]
        return found


@pytest.fixture(scope="module")
def page() -> PageModel:
    model = PageModel()
    model.feed(render_page().body)
    return model


def controls(page: PageModel) -> list[Element]:
    """The applicant's fields (not the reference, not the sign-in)."""
    return [
        e
        for e in page.elements
        if e.tag in {"input", "select"} and e.attrs.get("name") in set(FEATURES)
    ]


def placeholder_and_options(page: PageModel, name: str) -> tuple[Element, list[Element]]:
    first, *rest = [o for o in page.all("option") if o.select == name]
    return first, rest


def test_every_applicant_field_has_one_labelled_control_in_schema_order(page: PageModel) -> None:
    assert [c.attrs["name"] for c in controls(page)] == list(FEATURES)
    labels = {lab.attrs["for"]: lab.text for lab in page.all("label")}
    for control in controls(page):
        name = control.attrs["name"]
        assert control.attrs["id"] == f"f-{name}"
        assert labels[control.attrs["id"]] == field_label(name)
        assert "required" in control.attrs
        hint = page.by_id(f"hint-{name}")
        assert control.attrs["aria-describedby"] == hint.attrs["id"]
        description = Applicant.model_fields[name].description
        assert description
        assert hint.text.startswith(description.split("'")[0])
        assert (
            hint.text
            == FormField.from_schema(
                name, Applicant.model_json_schema()["properties"][name], None
            ).hint()
        )
        assert page.by_id(f"err-{name}").attrs.keys() >= {"hidden"}
    assert len(set(labels.values())) == len(labels), "labels tell fields apart"


def test_selects_hold_the_schema_categories_after_a_placeholder_chosen_by_default(
    page: PageModel,
) -> None:
    example = example_applicant()
    selects = [c.attrs["name"] for c in controls(page) if c.tag == "select"]
    assert selects == [n for n in FEATURES if n in CATEGORICAL_FEATURES or n in CLASS_FIELDS]
    for name in CATEGORICAL_FEATURES:
        placeholder, mine = placeholder_and_options(page, name)
        assert (placeholder.attrs["value"], placeholder.text) == ("", PLACEHOLDER)
        assert "selected" in placeholder.attrs, f"{name}: opens on the placeholder"
        assert [o.attrs["value"] for o in mine] == list(CATEGORIES[name])
        assert [o.text for o in mine] == [option_label(name, v) for v in CATEGORIES[name]]
        assert not [o for o in mine if "selected" in o.attrs], f"{name}: nothing chosen"
        assert page.by_id(f"f-{name}").attrs["data-example"] == example[name]
        texts = [o.text for o in mine]
        assert len(set(texts)) == len(texts), f"{name}: options read differently"
        assert all("_" not in t for t in texts), f"{name}: raw identifiers shown"
    assert all(o.select for o in page.all("option"))


def test_hints_show_categories_in_the_words_their_select_shows(page: PageModel) -> None:
    quoted = 0
    for name in CATEGORICAL_FEATURES:
        hint = page.by_id(f"hint-{name}").text
        for value in CATEGORIES[name]:
            assert f"'{value}'" not in hint, f"{name}: the hint shows the API code {value!r}"
            if f"'{value}'" in (Applicant.model_fields[name].description or ""):
                assert f"“{option_label(name, value)}”" in hint
                quoted += 1
    assert quoted >= 2, "the schema quotes API values in some descriptions"
    checking = page.by_id("hint-checking_account").text
    assert "“200 or more” includes salary assignments" in checking
    assert "“No current account” if there is no current account" in checking


def test_class_fields_are_selects_of_their_classes_in_words(page: PageModel) -> None:
    assert set(CLASS_FIELDS) == {"installment_rate", "residence_since"}
    properties = Applicant.model_json_schema()["properties"]
    for name in CLASS_FIELDS:
        control = page.by_id(f"f-{name}")
        assert (control.tag, control.attrs["data-kind"]) == ("select", "integer")
        placeholder, mine = placeholder_and_options(page, name)
        assert "selected" in placeholder.attrs
        words = properties[name][CLASSES_KEY]
        assert [o.attrs["value"] for o in mine] == list(words) == ["1", "2", "3", "4"]
        for option in mine:
            assert option.text == f"{words[option.attrs['value']]} (class {option.attrs['value']})"
            assert words[option.attrs["value"]] in (Applicant.model_fields[name].description or "")
    assert page.by_id("hint-installment_rate").text == (
        "The monthly instalment as a share of the applicant's disposable income, as the data "
        "set's class."
    )


def test_number_inputs_carry_the_schema_bounds_and_open_empty(page: PageModel) -> None:
    properties = Applicant.model_json_schema()["properties"]
    example = example_applicant()
    inputs = {c.attrs["name"]: c.attrs for c in controls(page) if c.tag == "input"}
    assert set(inputs) == set(NUMERIC_FEATURES) - set(CLASS_FIELDS)
    for name, attrs in inputs.items():
        prop = properties[name]
        assert attrs["type"] == "number"
        assert attrs["data-kind"] == prop["type"]
        assert float(attrs["max"]) == prop["maximum"]
        if "minimum" in prop:
            assert float(attrs["min"]) == prop["minimum"]
        else:  # exclusive bound: the smallest value the input allows lies just above it
            assert prop["exclusiveMinimum"] < float(attrs["min"]) <= prop["exclusiveMinimum"] + 0.01
        if prop["type"] == "integer":
            assert attrs["step"] == "1"
            assert attrs["inputmode"] == "numeric"
        assert "value" not in attrs, f"{name}: opens empty"
        assert float(attrs["data-example"]) == example[name]
        Applicant.model_validate({**example, name: float(attrs["min"])}, strict=False)
        Applicant.model_validate({**example, name: float(attrs["max"])}, strict=False)


def test_load_example_fills_in_the_documented_example(page: PageModel) -> None:
    values: dict[str, object] = {}
    for control in controls(page):
        raw = control.attrs["data-example"]
        kind = control.attrs["data-kind"]
        values[control.attrs["name"]] = (
            int(raw) if kind == "integer" else float(raw) if kind == "number" else raw
        )
    assert Applicant.model_validate(values) == Applicant.model_validate(example_applicant())
    assert [b.text for b in page.all("button") if b.attrs.get("id") == "load-example"] == [
        "Load example"
    ]


def test_the_application_reference_comes_first_and_is_required(page: PageModel) -> None:
    first = next(
        e for e in page.elements if e.tag in {"input", "select"} and e.attrs["id"][:2] == "f-"
    )
    assert first.attrs["id"] == "f-application_id"
    assert first.attrs["type"] == "text"
    assert "required" in first.attrs
    assert first.attrs["pattern"] == r"[A-Za-z0-9._:\-]{1,64}"
    assert first.attrs["pattern"].replace("\\", "") in APPLICATION_ID_PATTERN
    assert (
        first.attrs["data-example"] == Application.model_json_schema()["example"]["application_id"]
    )
    assert page.by_id("err-application_id").attrs.keys() >= {"hidden"}


def test_the_page_holds_no_credential_and_asks_for_one_in_the_page(page: PageModel) -> None:
    body = render_page().body
    assert "Bearer " not in body.replace("`Authorization: Bearer`", "").split("<script>")[0]
    token = page.by_id("s-token")
    assert (token.attrs["type"], token.attrs["autocomplete"]) == ("password", "off")
    assert "value" not in token.attrs
    officer = page.by_id("s-officer")
    assert officer.attrs["autocomplete"] == "username"
    script = page.all("script")[0].text
    assert "sessionStorage" in script
    assert "localStorage" not in script, "nothing outlives the browser session"


def test_wording_overrides_name_only_real_fields_and_categories() -> None:
    assert set(FIELD_LABELS) <= {*FEATURES, "application_id"}
    for name, labels in OPTION_LABELS.items():
        assert name in CATEGORIES
        assert set(labels) <= set(CATEGORIES[name]), f"stale option wording for {name}"


def test_page_is_usable_on_a_phone_and_by_keyboard(page: PageModel) -> None:
    (html_tag,) = page.all("html")
    assert html_tag.attrs["lang"] == "en"
    viewports = [m for m in page.all("meta") if m.attrs.get("name") == "viewport"]
    assert viewports
    assert "width=device-width" in viewports[0].attrs["content"]
    css = page.all("style")[0].text
    assert re.search(r"@media \(max-width: 600px\)[^@]*\.fields \{ grid-template-columns: 1fr", css)
    (submit,) = [b for b in page.all("button") if b.attrs.get("id") == "submit"]
    assert submit.attrs["type"] == "submit"
    assert submit.text.strip()
    result = page.by_id("result")
    assert result.attrs["aria-live"] == "polite"
    assert all("tabindex" not in c.attrs for c in controls(page)), "document order is focus order"


def test_page_needs_nothing_from_the_network(page: PageModel) -> None:
    body = render_page().body
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", body)
    form = page.by_id("applicant-form")
    assert (form.attrs["data-endpoint"], form.attrs["data-probe"]) == ("classify", "model_card")


def test_app_serves_the_page_with_a_csp_pinning_its_inline_code(page: PageModel) -> None:
    async def fetch() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
            return await client.get("/"), await client.post("/", json={})

    response, post = asyncio.run(fetch())
    assert post.status_code == 405
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        (inline,) = page.all(tag)
        digest = base64.b64encode(hashlib.sha256(inline.text.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
