"""The loan officer's form at /ui: one HTML page built from the `Application` JSON schema.

Every input, option and bound comes from the schema the API validates against, so the form
cannot drift from the API: a new field or category shows up here by itself, and the API stays
the authority on what is valid (its field-level 400 errors are shown next to the field).
The form opens blank: every select on a placeholder, every number empty; "Load example" fills
in the documented example for demonstrations. The page is self-contained (inline CSS and JS,
no CDN) and holds no credential: with tokens on, the officer signs in in the page and the
token stays in the browser session (loan_form.js). It posts JSON to `classify`, relative to
where it is mounted, so it also works behind a path prefix.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from credit_risk.schema import (
    APPLICATION_ID_PATTERN,
    CLASSES_KEY,
    OFFICER_ID_PATTERN,
    Applicant,
    Application,
    example_applicant,
)

API_ROUTE: Final = "classify"
"""The API route the form posts to (CreditRiskService.classify), resolved relative to /ui."""
PROBE_ROUTE: Final = "model_card"
"""An API route behind the same auth, asked at start and at sign-in: a 401 means auth is on."""
DECISIONS_ROUTE: Final = "decisions"
"""Where a decision's notice is (`decisions/<id>/notice`), relative to /ui like the API."""
PLACEHOLDER: Final = "Choose…"
"""The text of a select's empty first option: nothing is chosen until the officer chooses."""

CURRENCY_STEP: Final = 0.01
"""Input step for decimal fields: one pfennig, the smallest unit of the data's currency (DM)."""

FIELD_LABELS: Final[dict[str, str]] = {
    "checking_account": "Current account balance (DM)",
    "duration_months": "Loan term (months)",
    "credit_amount": "Credit amount (DM)",
    "savings": "Savings (DM)",
    "employment_since": "In present employment for",
    "installment_rate": "Instalment rate class",
    "residence_since": "Residence class",
    "other_debtors": "Co-applicant or guarantor",
    "age_years": "Age (years)",
    "other_installment_plans": "Other instalment plans",
    "existing_credits": "Credits at this bank",
    "application_id": "Application reference",
}
"""Labels where the field name alone reads poorly; other fields get their name in words."""

OPTION_LABELS: Final[dict[str, dict[str, str]]] = {
    "checking_account": {"below_0": "Overdrawn (below 0)", "none": "No current account"},
    "credit_history": {
        "no_credits_or_all_paid": "No credits taken, or all paid back",
        "all_paid_at_this_bank": "All credits at this bank paid back",
        "existing_paid_duly": "Existing credits paid duly so far",
        "delayed_in_past": "Delays in the past",
        "critical_or_other_credits": "Critical account, or credits at other banks",
    },
    "purpose": {
        "car_new": "Car (new)",
        "car_used": "Car (used)",
        "furniture_equipment": "Furniture or equipment",
        "radio_television": "Radio or television",
    },
    "savings": {
        "500_to_1000": "500 to 1,000",
        "1000_or_more": "1,000 or more",
        "unknown_or_none": "Unknown, or none",
    },
    "property": {
        "savings_or_life_insurance": "Building-society savings or life insurance",
        "car_or_other": "Car or other",
        "unknown_or_none": "Unknown, or none",
    },
    "job": {
        "unemployed_or_unskilled_non_resident": "Unemployed, or unskilled non-resident",
        "unskilled_resident": "Unskilled, resident",
        "skilled": "Skilled employee or official",
        "management": "Management, self-employed or highly qualified",
    },
    "telephone": {"registered": "Registered in the applicant's name"},
}
"""Readable wording for API values where turning underscores into spaces is not enough."""

_TEMPLATES = files("credit_risk.serving") / "templates"


def words(identifier: str) -> str:
    """An API identifier as words a loan officer reads: 'car_used' -> 'Car used'."""
    text = identifier.replace("_", " ")
    return text[:1].upper() + text[1:]


def field_label(name: str) -> str:
    """The visible label of an applicant field."""
    return FIELD_LABELS.get(name, words(name))


def option_label(name: str, value: str) -> str:
    """The visible text of one category of a select."""
    return OPTION_LABELS.get(name, {}).get(value, words(value))


def _number(value: float) -> str:
    """A bound or value as an HTML valid floating-point number (no '.0' on whole numbers)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class FormField:
    """One applicant field as the form shows it, read from the API's JSON schema."""

    name: str
    label: str
    description: str
    kind: str  # JSON-schema type: "string" (a select), "integer" or "number"
    example: Any
    options: tuple[str, ...] = ()
    option_texts: tuple[str, ...] = ()
    """What each option reads as, in `options` order."""
    classes: tuple[tuple[str, str], ...] = ()
    """A class field's codes in words (the schema's `x-classes`): rendered as a select."""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None

    @classmethod
    def from_schema(cls, name: str, prop: dict[str, Any], example: Any) -> FormField:
        """Options for enums and class fields; min/max/step for numbers (an exclusive minimum
        steps past it)."""
        kind = str(prop.get("type", "string"))
        common = {
            "name": name,
            "label": field_label(name),
            "description": str(prop.get("description", "")),
            "kind": kind,
            "example": example,
        }
        if "enum" in prop:
            options = tuple(str(v) for v in prop["enum"])
            texts = tuple(option_label(name, v) for v in options)
            return cls(**common, options=options, option_texts=texts)
        if CLASSES_KEY in prop:
            classes = tuple((str(code), str(text)) for code, text in prop[CLASSES_KEY].items())
            return cls(
                **common,
                options=tuple(code for code, _ in classes),
                option_texts=tuple(f"{text} (class {code})" for code, text in classes),
                classes=classes,
            )
        if kind not in {"integer", "number"}:
            msg = f"applicant field {name!r} has type {kind!r}, which the form cannot render"
            raise TypeError(msg)
        step = 1.0 if kind == "integer" else CURRENCY_STEP
        minimum: float | None = prop.get("minimum")
        if minimum is None and "exclusiveMinimum" in prop:
            minimum = float(prop["exclusiveMinimum"]) + step
        maximum: float | None = prop.get("maximum")
        if maximum is None and "exclusiveMaximum" in prop:
            maximum = float(prop["exclusiveMaximum"]) - step
        return cls(**common, minimum=minimum, maximum=maximum, step=step)

    def bounds_text(self) -> str:
        """The allowed range in words, for the hint under the label."""
        if self.minimum is not None and self.maximum is not None:
            return f"Allowed: {self.minimum:,.{self._digits()}f} to {self.maximum:,.0f}."
        if self.minimum is not None:
            return f"At least {self.minimum:,.{self._digits()}f}."
        if self.maximum is not None:
            return f"At most {self.maximum:,.0f}."
        return ""

    def _digits(self) -> int:
        return 0 if self.kind == "integer" else 2

    def hint(self) -> str:
        """The hint under the label: the schema's description, where each quoted API value
        reads as its select shows it ('200_or_more' -> “200 or more”), then the range."""
        text = self.description
        if self.classes:  # the select's options read as the classes: say them once
            text = text.replace(": " + "; ".join(f"{c} = {t}" for c, t in self.classes), "")
        for value, shown in zip(self.options, self.option_texts, strict=True):
            text = text.replace(f"'{value}'", f"“{shown}”")
        return " ".join(part for part in (text, self.bounds_text()) if part)


def form_fields() -> list[FormField]:
    """Every applicant field, in schema order, with the documented example as its value."""
    schema = Applicant.model_json_schema()
    example = example_applicant()
    return [
        FormField.from_schema(name, prop, example.get(name))
        for name, prop in schema["properties"].items()
    ]


def _render_field(spec: FormField) -> str:
    esc = html.escape
    name = spec.name
    hint = spec.hint()
    example = "" if spec.example is None else str(spec.example)
    if spec.example is not None and spec.kind in {"integer", "number"}:
        example = _number(spec.example)
    common = (
        f'id="f-{esc(name)}" name="{esc(name)}" data-kind="{esc(spec.kind)}" required '
        f'aria-describedby="hint-{esc(name)}" data-example="{esc(example)}"'
    )
    if spec.options:
        options = "".join(
            f'<option value="{esc(value)}">{esc(text)}</option>'
            for value, text in zip(spec.options, spec.option_texts, strict=True)
        )
        placeholder = f'<option value="" selected>{esc(PLACEHOLDER)}</option>'
        control = f"<select {common}>{placeholder}{options}</select>"
    else:
        attrs = [f'step="{_number(spec.step or 1)}"']
        if spec.minimum is not None:
            attrs.append(f'min="{_number(spec.minimum)}"')
        if spec.maximum is not None:
            attrs.append(f'max="{_number(spec.maximum)}"')
        mode = "numeric" if spec.kind == "integer" else "decimal"
        control = f'<input type="number" inputmode="{mode}" {common} {" ".join(attrs)}>'
    return _wrap(name, spec.label, hint, control)


def _wrap(name: str, label: str, hint: str, control: str, *, prefix: str = "f") -> str:
    """A control with its label, hint and (hidden) error line."""
    esc = html.escape
    return (
        f'<div class="field" id="field-{esc(name)}">'
        f'<label for="{prefix}-{esc(name)}">{esc(label)}</label>'
        f'<p class="hint" id="hint-{esc(name)}">{esc(hint)}</p>'
        f"{control}"
        f'<p class="error" id="err-{esc(name)}" hidden></p>'
        f"</div>"
    )


def html_pattern(pattern: str) -> str:
    """A schema's anchored regex as an HTML `pattern` (anchored by the browser and compiled
    with the `v` flag, where a literal `-` in a class must be escaped)."""
    return pattern.removeprefix("^").removesuffix("$").replace("-]", r"\-]")


def _text_input(name: str, pattern: str, rule: str, extra: str) -> str:
    """A text control for an identifier the schema limits by `pattern` (up to 64 characters)."""
    esc = html.escape
    return (
        f'<input type="text" id="f-{esc(name)}" name="{esc(name)}" data-kind="string" '
        f'pattern="{esc(html_pattern(pattern))}" maxlength="64" title="{esc(rule)}" '
        f'spellcheck="false" autocapitalize="off" aria-describedby="hint-{esc(name)}" {extra}>'
    )


def _render_reference() -> str:
    """The application reference: the lender's own, so retrieval finds every decision for it."""
    name = "application_id"
    example = Application.model_json_schema()["example"][name]
    rule = "1 to 64 letters, digits or . _ : -"
    control = _text_input(
        name,
        APPLICATION_ID_PATTERN,
        rule,
        f'required autocomplete="off" data-example="{html.escape(example)}"',
    )
    hint = f"As on the application ({rule}); the decision is stored under it."
    return _wrap(name, field_label(name), hint, control)


def _render_signin() -> str:
    """The sign-in panel: officer id, and the access token when the service asks for one."""
    esc = html.escape
    officer = (
        f'<input type="text" id="s-officer" name="officer" autocomplete="username" '
        f'pattern="{esc(html_pattern(OFFICER_ID_PATTERN))}" maxlength="64" '
        'title="1 to 64 letters, digits or . _ : - @" spellcheck="false" autocapitalize="off" '
        'aria-describedby="hint-s-officer">'
    )
    access = (
        '<input type="password" id="s-token" name="token" autocomplete="off" '
        'spellcheck="false" aria-describedby="hint-s-token">'
    )
    return f"""<section id="signin" class="signin" aria-labelledby="signin-title">
<h2 id="signin-title">Officer</h2>
<p id="signin-why" class="hint"></p>
<form id="signin-form" novalidate>
<div class="fields">
<div class="field"><label for="s-officer">Officer id</label>
<p class="hint" id="hint-s-officer">Your id at the lender: recorded with every decision you ask
for.</p>{officer}</div>
<div class="field" id="field-s-token" hidden><label for="s-token">Access token</label>
<p class="hint" id="hint-s-token">As given to you; kept for this browser tab only.</p>
{access}</div>
</div>
<p class="error" id="signin-error" role="alert" hidden></p>
<div class="actions"><button type="submit" id="sign-in">Continue</button></div>
</form>
</section>"""


def _asset(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@dataclass(frozen=True)
class Page:
    """The rendered form and the headers that lock it down to its own inline code."""

    body: str
    headers: dict[str, str]


def render_page() -> Page:
    """The whole form page; its inline style and script are pinned by hash in the CSP."""
    style, script = _asset("loan_form.css"), _asset("loan_form.js")
    fields = "\n".join(_render_field(spec) for spec in form_fields())
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Credit application · credit-risk-bento</title>
<style>{style}</style>
</head>
<body>
<main>
<header class="top">
<h1>Credit application</h1>
<p id="session" class="session" hidden>Officer <strong id="session-officer"></strong>
<button type="button" id="sign-out" class="secondary small">Sign out</button></p>
</header>
<p class="lede">Enter the applicant's details as on the application; every field must be
chosen. The form asks the scoring service for a decision and shows its principal reasons and
its reference.</p>
<noscript><p class="notice">This form needs JavaScript to reach the scoring service.</p></noscript>
{_render_signin()}
<form id="applicant-form" novalidate data-endpoint="{html.escape(API_ROUTE)}"
 data-probe="{html.escape(PROBE_ROUTE)}" data-decisions="{html.escape(DECISIONS_ROUTE)}">
<div class="reference-field">
{_render_reference()}
</div>
<div class="fields">
{fields}
</div>
<div class="actions">
<button type="submit" id="submit">Get decision</button>
<button type="button" id="load-example" class="secondary">Load example</button>
<button type="reset" class="secondary">Clear form</button>
</div>
</form>
<section id="result" class="result" aria-live="polite" tabindex="-1"></section>
</main>
<script>{script}</script>
</body>
</html>
"""
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Page(body=body, headers=headers)


def create_app() -> Starlette:
    """The ASGI app BentoML mounts at /ui (`@bentoml.asgi_app(app, path="/ui")`)."""
    page = render_page()

    async def form(_request: Request) -> Response:
        return HTMLResponse(page.body, headers=page.headers)

    return Starlette(routes=[Route("/", form, methods=["GET"])])


app: Final = create_app()
"""Rendered once at import: the schema is fixed for the life of the process."""
