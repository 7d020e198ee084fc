"""The adverse-action notice: what a declined applicant is told, as one printable HTML page.

`GET /decisions/{decision_id}/notice` (serving/retrieval.py) and `credit-risk decisions notice`
render it from the stored record alone: the decision and its date, the principal reasons in
their stored order, the score and how the scale reads, the recourse, the model and policy
versions, and what the applicant may do. The page is one self-contained document (inline CSS
pinned by hash in its CSP, no URL of any kind, every value escaped) that prints on A4.
"""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import datetime
from html import escape
from typing import Any, Final

import numpy as np

from credit_risk.decision_store.records import TIME_FORMAT, DecisionRecord
from credit_risk.policy import BAND_FLOORS, SCALING
from credit_risk.schema import describe_recourse

TITLE: Final = "Notice of credit decision"

MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
"""Month names in English whatever the process locale (`%B` follows the locale)."""

STYLE: Final = """
@page { size: A4; margin: 18mm 17mm; }
* { box-sizing: border-box; }
html { background: #f3f3f1; }
body { margin: 0; color: #1b1b1b; font: 11pt/1.45 Georgia, "DejaVu Serif", "Times New Roman",
  serif; }
main { max-width: 176mm; margin: 24px auto; padding: 14mm 15mm; background: #fff;
  border: 1px solid #d6d6d2; }
h1 { font-size: 19pt; margin: 0 0 2mm; letter-spacing: 0.01em; }
h2 { font-size: 12.5pt; margin: 0 0 2mm; border-bottom: 1px solid #c9c9c4; padding-bottom: 1mm; }
section { margin: 0 0 6mm; break-inside: avoid; page-break-inside: avoid; }
p { margin: 0 0 2mm; }
.lede { color: #444; margin-bottom: 6mm; }
.outcome { font-size: 14pt; font-weight: bold; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 1mm 6mm; margin: 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
code { font: 9.5pt/1.3 "DejaVu Sans Mono", "Courier New", monospace; word-break: break-all; }
ol.reasons { margin: 0; padding-left: 7mm; }
ol.reasons li { margin-bottom: 1mm; }
.code { color: #666; font-size: 9pt; }
table.bands { border-collapse: collapse; margin: 2mm 0 1mm; }
table.bands th, table.bands td { border: 1px solid #c9c9c4; padding: 1mm 4mm; text-align: left; }
table.bands tr.yours td, table.bands tr.yours th { background: #ececea; font-weight: bold; }
.small { font-size: 9.5pt; color: #444; }
@media print {
  html, body { background: #fff; }
  body { font-size: 10.5pt; color: #000; }
  main { max-width: none; margin: 0; padding: 0; border: 0; }
  table.bands tr.yours td, table.bands tr.yours th { background: none; }
}
""".strip()


def _csp_source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


HEADERS: Final = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src {_csp_source_hash(STYLE)}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""What the route answers the notice with: nothing but its own inline style may load, and a
notice (personal data) is kept by no cache."""


class NotADeclineError(ValueError):
    """A notice was asked for an approved decision: adverse-action notices are for declines."""

    def __init__(self, decision_id: str, decision: str) -> None:
        super().__init__(
            f"decision {decision_id} is not a decline (it is {decision!r}): a notice of "
            "adverse action is only given for a declined application"
        )


def decision_date(decided_at: str) -> str:
    """The record's UTC date in words (`2 December 2026`), as the notice states it."""
    moment = datetime.strptime(decided_at, TIME_FORMAT)
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def band_ranges() -> list[tuple[str, str]]:
    """Each band with the shown scores it covers, in words, lowest risk first."""
    bands = list(BAND_FLOORS.items())
    ranges: list[tuple[str, str]] = []
    for i, (band, floor) in enumerate(bands):
        above = bands[i - 1][1] if i else math.inf
        if math.isinf(floor):
            ranges.append((band, f"below {above:g}"))
        elif math.isinf(above):
            ranges.append((band, f"{floor:g} and above"))
        else:
            ranges.append((band, f"{floor:g} to {above - 1:g}"))
    return ranges


def approval_score(threshold: float) -> float:
    """The score at the model's probability cut-off: applications scoring at or above about
    this are approved (the decision is made on the probability, the score is its scale; every
    model is trained with the published scaling, `policy.SCALING`)."""
    return float(SCALING.score(np.array([threshold]))[0])


def render_notice(record: DecisionRecord) -> str:
    """The notice for a declined decision as a complete HTML document; raises
    `NotADeclineError` for an approval."""
    if record.decision != "decline":
        raise NotADeclineError(record.decision_id, record.decision)
    view = record.view()
    return _document(view)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _document(view: dict[str, Any]) -> str:
    outputs, inputs = view["outputs"], view["inputs"]
    reference = view["application_id"]
    sections = "\n".join(
        (
            _decision_section(view, reference),
            _reasons_section(view["reasons"]),
            _score_section(outputs),
            _recourse_section(view["recourse"], inputs),
            _next_steps_section(view["decision_id"], reference),
            _versions_section(view),
        )
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(TITLE)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>{_e(TITLE)}</h1>
<p class="lede">This notice tells you the outcome of your application for credit, the principal
reasons for it, and what you may do next.</p>
{sections}
</main>
</body>
</html>
"""


def _decision_section(view: dict[str, Any], reference: str | None) -> str:
    application = f"<code>{_e(reference)}</code>" if reference is not None else "none was given"
    return f"""<section id="decision">
<h2>Decision</h2>
<p class="outcome">Your application has been declined.</p>
<dl class="facts">
<dt>Date of decision</dt><dd id="decision-date">{_e(decision_date(view["decided_at"]))} (UTC)</dd>
<dt>Decision reference</dt><dd><code id="decision-id">{_e(view["decision_id"])}</code></dd>
<dt>Application reference</dt><dd id="application-id">{application}</dd>
</dl>
</section>"""


def _reasons_section(reasons: list[dict[str, Any]]) -> str:
    if not reasons:
        body = "<p>No principal reasons were recorded with this decision.</p>"
    else:
        items = "\n".join(
            f'<li data-code="{_e(r["code"])}">{_e(r["description"])} '
            f'<span class="code">({_e(r["code"])})</span></li>'
            for r in reasons
        )
        body = (
            "<p>The principal reasons, the most important first:</p>\n"
            f'<ol class="reasons" id="reasons">\n{items}\n</ol>'
        )
    return f"""<section>
<h2>Principal reasons</h2>
{body}
</section>"""


YOURS: Final = ' class="yours"'


def _score_section(outputs: dict[str, Any]) -> str:
    band = outputs["risk_band"]
    rows = "\n".join(
        f'<tr{YOURS if name == band else ""}><th scope="row">{_e(name)}</th>'
        f"<td>{_e(scores)}</td></tr>"
        for name, scores in band_ranges()
    )
    lowest_risk = next(iter(BAND_FLOORS))
    cutoff = approval_score(float(outputs["threshold"]))
    return f"""<section id="score">
<h2>Your score</h2>
<p><strong id="score-value">{_e(outputs["score"])} points</strong>, risk band
<strong id="score-band">{_e(band)}</strong>.</p>
<p>How the scale reads: a higher score means a lower risk. A score of
{_e(f"{SCALING.base_score:g}")} points stands for odds of {_e(f"{SCALING.base_odds_good_to_bad:g}")}
to 1 that a loan is repaid as agreed; every {_e(f"{SCALING.pdo:g}")} points more double those
odds, and every {_e(f"{SCALING.pdo:g}")} points fewer halve them. Under this policy an application
is approved from a score of about {_e(f"{cutoff:.0f}")} points.</p>
<table class="bands">
<thead><tr><th scope="col">Risk band</th><th scope="col">Scores</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="small">Band {_e(lowest_risk)} is the lowest risk.</p>
</section>"""


def _recourse_section(recourse: dict[str, Any] | None, inputs: dict[str, Any]) -> str:
    asked = (
        f"You asked for {_e(_amount(float(inputs['credit_amount'])))} DM over "
        f"{_e(inputs['duration_months'])} months."
    )
    if recourse is None:  # a record from before recourse was part of a decline
        outcome = "No lower amount or shorter term was assessed for this decision."
        note = ""
    else:
        outcome = describe_recourse(recourse.get("credit_amount"), recourse.get("duration_months"))
        note = (
            '\n<p class="small">Only the amount and the term were varied; everything else is as '
            "you stated it.</p>"
        )
    return f"""<section id="recourse">
<h2>What would be approved</h2>
<p>{asked} {_e(outcome)}</p>{note}
</section>"""


def _next_steps_section(decision_id: str, reference: str | None) -> str:
    quoted = f"<code>{_e(decision_id)}</code>"
    if reference is not None:
        quoted += f" (application reference <code>{_e(reference)}</code>)"
    return f"""<section id="next-steps">
<h2>What you may do</h2>
<p>You may ask for this decision to be reconsidered, or for more information about it, quoting
the decision reference {quoted}. If any information in your application was wrong or has
changed, say so when you ask: the decision was made on the information as you gave it.</p>
</section>"""


def _versions_section(view: dict[str, Any]) -> str:
    return f"""<section id="versions">
<h2>About this decision</h2>
<dl class="facts small">
<dt>Model version</dt><dd><code id="model-version">{_e(view["model_version"])}</code></dd>
<dt>Policy version</dt><dd><code id="policy-version">{_e(view["policy_version"])}</code></dd>
</dl>
</section>"""
