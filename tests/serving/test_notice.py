"""The adverse-action notice, rendered from records stored and read back from a real store."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from credit_risk.decision_store import DecisionRecord, DecisionStore, open_store
from credit_risk.decision_store.chain import ChainWriter
from credit_risk.policy import BAND_FLOORS, SCALING
from credit_risk.schema import describe_recourse, example_applicant
from credit_risk.serving.notice import (
    HEADERS,
    STYLE,
    TITLE,
    NotADeclineError,
    approval_score,
    band_ranges,
    render_notice,
)
from tests.decision_store.records_for_tests import NOTICE_RULE, decided_record

DECLINE = {"credit_history": 0.9, "checking_account": 0.5, "savings": 0.3, "purpose": 0.1}
"""Points lost per field, in a different order from the schema's (reasons go costliest first)."""


BLOCKS = frozenset({"p", "li", "tr", "th", "td", "dt", "dd", "h1", "h2", "section"})


class Page(HTMLParser):
    """The notice as a reader sees it: its visible text, and the text of each element by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self.items: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[tuple[str, str | None]] = []
        self._skip = 0
        self.feed(html)
        self.text = re.sub(r"\s+", " ", "".join(self.parts)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in {"style", "title"}:
            self._skip += 1
        ident = dict(attrs).get("id")
        if ident:
            self.by_id[ident] = []
        if tag == "li":
            self.items.append("")
        if tag in BLOCKS:
            self.handle_data(" ")  # as a browser lays out cells and paragraphs: apart
        self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "title"}:
            self._skip -= 1
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.parts.append(data)
        for _, ident in self._open:
            if ident:
                self.by_id[ident].append(data)
        if any(tag == "li" for tag, _ in self._open):
            self.items[-1] += data

    def of(self, ident: str) -> str:
        """The visible text of the element with this id."""
        return re.sub(r"\s+", " ", "".join(self.by_id[ident])).strip()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DecisionStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'decisions.sqlite'}")
    yield opened
    opened.close()


def stored(store: DecisionStore, record: DecisionRecord) -> DecisionRecord:
    """The record as the store gives it back after the writer chained it."""
    [written] = ChainWriter(store, "api:test").append([record])
    found = store.get(written.decision_id)
    assert found is not None
    return found


def test_a_decline_notice_states_decision_reasons_score_scale_recourse_and_versions(
    store: DecisionStore,
) -> None:
    record = stored(
        store,
        decided_record(
            0.4, DECLINE, recourse=(3200.0, 24), when=datetime(2026, 3, 9, 23, 59, tzinfo=UTC)
        ),
    )
    page = Page(render_notice(record))
    view = record.view()

    assert ("h1", {}) in page.tags
    assert page.text.startswith(TITLE)
    assert "declined" in page.of("decision").lower()
    assert page.of("decision-date") == "9 March 2026 (UTC)"
    assert page.of("decision-id") == record.decision_id
    assert page.of("application-id") == "loan-2026-000123"

    stated = [item.split(" (RC")[0].strip() for item in page.items]
    assert stated == [r["description"] for r in view["reasons"]], "in their stored order"
    assert [r["feature"] for r in view["reasons"]] == list(DECLINE)

    assert page.of("score-value") == f"{record.score} points"
    assert page.of("score-band") == record.risk_band
    scale = page.of("score")
    assert "higher score means a lower risk" in scale
    assert f"every {SCALING.pdo:g} points more double those odds" in scale
    assert f"score of {SCALING.base_score:g} points stands for odds of " in scale
    assert f"{SCALING.base_odds_good_to_bad:g} to 1" in scale
    assert f"about {approval_score(NOTICE_RULE.threshold):.0f} points" in scale
    for band, scores in band_ranges():
        assert f"{band} {scores}" in scale
    assert [b for b, _ in band_ranges()] == list(BAND_FLOORS)

    assert describe_recourse(3200.0, 24) in page.of("recourse")
    applicant = example_applicant()
    assert f"{applicant['credit_amount']:,.0f} DM over {applicant['duration_months']}" in (
        page.of("recourse")
    )
    steps = page.of("next-steps")
    assert "reconsidered" in steps
    assert record.decision_id in steps
    assert page.of("model-version") == "credit_risk:test"
    assert page.of("policy-version") == NOTICE_RULE.policy_version


def test_the_band_ranges_read_off_the_published_floors() -> None:
    floors = [int(f) for f in BAND_FLOORS.values() if f > -1e9]
    assert band_ranges() == [
        ("A", f"{floors[0]} and above"),
        ("B", f"{floors[1]} to {floors[0] - 1}"),
        ("C", f"{floors[2]} to {floors[1] - 1}"),
        ("D", f"{floors[3]} to {floors[2] - 1}"),
        ("E", f"below {floors[3]}"),
    ]


def test_the_approval_score_is_the_score_at_the_threshold() -> None:
    assert approval_score(1 / 51) == pytest.approx(SCALING.base_score)
    assert approval_score(1 / 101) == pytest.approx(SCALING.base_score + SCALING.pdo)


def test_no_recourse_found_and_no_reference_are_said_so(store: DecisionStore) -> None:
    record = stored(store, decided_record(0.9, DECLINE, recourse=None, application_id=None))
    page = Page(render_notice(record))
    assert describe_recourse(None, None) in page.of("recourse")
    assert page.of("application-id") == "none was given"
    assert "application reference" not in page.of("next-steps")


def test_a_decline_stored_before_recourse_existed_says_none_was_assessed(
    store: DecisionStore,
) -> None:
    legacy = decided_record(0.9, DECLINE, recourse=(100.0, 6))._replace(recourse=None)
    page = Page(render_notice(stored(store, legacy)))
    assert "No lower amount or shorter term was assessed" in page.of("recourse")


def test_an_approval_has_no_notice(store: DecisionStore) -> None:
    record = stored(store, decided_record(0.05, {}))
    assert record.decision == "approve"
    with pytest.raises(NotADeclineError) as refused:
        render_notice(record)
    assert f"{record.decision_id} is not a decline (it is 'approve')" in str(refused.value)


def test_every_value_is_escaped(store: DecisionStore) -> None:
    hostile = decided_record(0.4, DECLINE, recourse=(3200.0, 24))._replace(
        model_version='<script>alert("m")</script>',
        policy_version="policy:&<b>",
    )
    html = render_notice(stored(store, hostile))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;m&quot;)&lt;/script&gt;" in html
    assert "policy:&amp;&lt;b&gt;" in html
    assert "<b>" not in html


def test_the_page_is_self_contained_printable_and_pinned_by_its_csp(
    store: DecisionStore,
) -> None:
    html = render_notice(stored(store, decided_record(0.4, DECLINE, recourse=(3200.0, 24))))
    assert html.startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    for external in ("http:", "https:", "//", "url(", "@import", "src=", "href=", "<script"):
        assert external not in html, external
    assert "@media print" in STYLE
    assert "size: A4" in STYLE
    assert f"<style>{STYLE}</style>" in html
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    csp = HEADERS["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert HEADERS["Cache-Control"] == "no-store"


def test_the_same_record_renders_the_same_page(store: DecisionStore) -> None:
    record = stored(store, decided_record(0.4, DECLINE, recourse=(3200.0, 24)))
    assert render_notice(record) == render_notice(record)
