"""The retrieval app in-process over a real SQLite store: the notice route's answers, from the
page for a decline to the JSON refusals (400, 404, 409, 503)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from credit_risk.decision_store import DecisionRecord, open_store
from credit_risk.decision_store.chain import ChainWriter
from credit_risk.serving.notice import HEADERS, render_notice
from credit_risk.serving.retrieval import create_app
from tests.decision_store.records_for_tests import decided_record


@pytest.fixture
def stored(tmp_path: Path) -> tuple[str, list[DecisionRecord]]:
    """A store holding one decline and one approval, by its URL."""
    url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    store = open_store(url)
    records = ChainWriter(store, "api:test").append(
        [
            decided_record(0.4, {"credit_history": 0.9}, recourse=(900.0, 12)),
            decided_record(0.05, {}),
        ]
    )
    store.close()
    return url, records


@pytest.fixture
def client(stored: tuple[str, list[DecisionRecord]]) -> Iterator[TestClient]:
    url, _ = stored
    with TestClient(create_app(lambda: open_store(url))) as test_client:
        yield test_client


def test_a_declines_notice_is_its_page_with_the_locked_down_headers(
    client: TestClient, stored: tuple[str, list[DecisionRecord]]
) -> None:
    declined = stored[1][0]
    r = client.get(f"/{declined.decision_id}/notice")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text == render_notice(declined)
    for name, value in HEADERS.items():
        assert r.headers[name] == value


def test_an_approvals_notice_is_a_409_naming_why(
    client: TestClient, stored: tuple[str, list[DecisionRecord]]
) -> None:
    approved = stored[1][1]
    r = client.get(f"/{approved.decision_id}/notice")
    assert r.status_code == 409
    assert r.json()["decision"] == "approve"
    assert "only given for a declined application" in r.json()["error"]


def test_unknown_and_malformed_ids_are_json(client: TestClient) -> None:
    unknown = client.get(f"/{'a' * 32}/notice")
    assert unknown.status_code == 404
    assert "no decision" in unknown.json()["error"]
    malformed = client.get(f"/{'A' * 32}/notice")
    assert malformed.status_code == 400
    assert "decision_id" in malformed.json()["error"]


def test_a_store_that_cannot_be_read_is_a_503_naming_the_cause(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "decisions.sqlite"
    with TestClient(create_app(lambda: open_store(f"sqlite:///{missing}"))) as client:
        r = client.get(f"/{'a' * 32}/notice")
    assert r.status_code == 503
    assert r.json()["cause"]
    assert "the decision store is unavailable" in r.json()["error"]
