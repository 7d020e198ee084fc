"""The store's interface on both backends: append, retrieval, time ranges, retention, outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from credit_risk.decision_store import DecisionStore, StoreError, open_store, store_url
from credit_risk.decision_store.chain import ChainWriter, verify
from credit_risk.decision_store.records import COLUMNS, CONTENT, hash_content, utc_text
from credit_risk.decision_store.store import SCHEMA_VERSION, Outcome
from credit_risk.schema import FEATURES, example_applicant
from tests.decision_store.records_for_tests import make_records
from tests.postgres import Postgres


def test_a_decision_is_found_by_its_id_with_everything_it_was_decided_on(
    store: DecisionStore,
) -> None:
    [stored] = ChainWriter(store, "w1").append(make_records(1, "loan-1", challenger=True))
    found = store.get(stored.decision_id)
    assert found == stored
    view = found.view()
    assert view["inputs"] == example_applicant()
    assert list(view["inputs"]) == list(FEATURES)
    assert view["outputs"]["decision"] == "approve"
    assert view["challenger"] == {"model_version": "credit_risk:other", "decision": "approve"}
    assert (view["model_version"], view["policy_version"]) == ("credit_risk:test", "policy:test")
    assert store.get("0" * 32) is None


def test_reasons_come_back_in_words_from_the_policy_catalogue(store: DecisionStore) -> None:
    declined = make_records(3)[-1]
    ChainWriter(store, "w1").append([declined])
    [reason] = store.get(declined.decision_id).view()["reasons"]  # type: ignore[union-attr]
    assert reason == {
        "code": "RC02",
        "feature": "duration_months",
        "points": -3.5,
        "description": "Length of the loan term",
    }


def test_every_decision_for_one_application_reference_oldest_first(store: DecisionStore) -> None:
    writer = ChainWriter(store, "w1")
    first = writer.append(make_records(1, "loan-7", datetime(2026, 1, 1, tzinfo=UTC)))
    writer.append(make_records(2, "other"))
    again = writer.append(make_records(1, "loan-7", datetime(2026, 2, 1, tzinfo=UTC)))
    found = store.by_application("loan-7")
    assert [r.decision_id for r in found] == [first[0].decision_id, again[0].decision_id]
    assert store.by_application("nobody") == []


def test_records_stream_in_time_order_between_bounds(store: DecisionStore) -> None:
    writer = ChainWriter(store, "w1")
    days = [datetime(2026, 1, d, tzinfo=UTC) for d in (3, 1, 2)]
    for day in days:
        writer.append(make_records(2, when=day))
    since, until = utc_text(days[1] + timedelta(hours=1)), utc_text(days[0])
    got = list(store.records(since=since, until=until))
    assert [r.decided_at[:10] for r in got] == ["2026-01-02", "2026-01-02"]
    assert len(list(store.records())) == store.count() == 6


def test_a_repeated_decision_id_is_refused_and_nothing_of_its_batch_is_stored(
    store: DecisionStore,
) -> None:
    writer = ChainWriter(store, "w1")
    [first] = writer.append(make_records(1))
    batch = [*make_records(2), first]
    with pytest.raises(Exception):  # noqa: B017, PT011 (each driver's own integrity error)
        writer.append(batch)
    assert store.count() == 1
    writer.append(make_records(1))  # the writer recovers its head from the store
    assert store.count() == 2


def test_purge_removes_old_decisions_and_their_outcomes(store: DecisionStore) -> None:
    writer = ChainWriter(store, "w1")
    old = writer.append(make_records(3, when=datetime(2020, 1, 1, tzinfo=UTC)))
    new = writer.append(make_records(2))
    store.put_outcomes([Outcome(old[0].decision_id, "bad", "2021-01-01")])
    assert store.purge(before="2021-01-01") == 3
    assert {r.decision_id for r in store.records()} == {r.decision_id for r in new}
    assert store.outcomes() == {}
    assert store.purge(before="2021-01-01") == 0


def test_outcomes_are_stored_and_replaced(store: DecisionStore) -> None:
    [r] = ChainWriter(store, "w1").append(make_records(1))
    store.put_outcomes([Outcome(r.decision_id, "good", "2027-01-01")])
    store.put_outcomes([Outcome(r.decision_id, "bad", "2027-02-01")])
    assert store.outcomes() == {r.decision_id: Outcome(r.decision_id, "bad", "2027-02-01")}
    assert store.known_ids([r.decision_id, "nope"]) == {r.decision_id: r.decided_at}


def test_several_processes_open_the_same_store(store_url: str) -> None:
    one, two = open_store(store_url), open_store(store_url)
    ChainWriter(one, "a").append(make_records(2))
    ChainWriter(two, "b").append(make_records(3))
    assert one.count() == two.count() == 5
    assert [w.writer_id for w in one.writers()] == ["a", "b"]


def test_the_store_location_from_the_environment(tmp_path: object) -> None:
    assert store_url({"CREDIT_RISK_DECISION_STORE": "postgresql://u@h/db"}) == "postgresql://u@h/db"
    secret = tmp_path / "url"  # type: ignore[operator]
    secret.write_text("postgresql://u:pw@h/db\n")
    assert store_url({"CREDIT_RISK_DECISION_STORE_FILE": str(secret)}) == "postgresql://u:pw@h/db"
    assert store_url({}).endswith("/decisions.sqlite")
    with pytest.raises(StoreError, match="not both"):
        store_url({"CREDIT_RISK_DECISION_STORE": "x", "CREDIT_RISK_DECISION_STORE_FILE": "y"})
    with pytest.raises(StoreError, match="must start with") as refused:
        store_url({"CREDIT_RISK_DECISION_STORE": "mysql://u:secret@h/db"})
    assert "secret" not in str(refused.value)
    with pytest.raises(StoreError, match="cannot read"):
        store_url({"CREDIT_RISK_DECISION_STORE_FILE": str(tmp_path / "missing")})  # type: ignore[operator]


def test_json_columns_are_stored_as_the_exact_text_that_was_hashed(store: DecisionStore) -> None:
    [r] = ChainWriter(store, "w1").append(make_records(1, challenger=True))
    again = store.get(r.decision_id)
    assert again is not None
    assert (again.inputs, again.reasons, again.challenger) == (r.inputs, r.reasons, r.challenger)
    assert json.loads(again.inputs)["credit_amount"] == 4500.0


def test_the_officer_who_asked_is_stored_and_shown(store: DecisionStore) -> None:
    writer = ChainWriter(store, "w1")
    [asked] = writer.append(make_records(1, "loan-9", officer_id="officer.schmidt"))
    [anonymous] = writer.append(make_records(1, "loan-9"))
    assert store.get(asked.decision_id) == asked
    views = [r.view() for r in store.by_application("loan-9")]
    assert [v["officer_id"] for v in views] == ["officer.schmidt", None]
    assert list(views[0])[:3] == ["decision_id", "application_id", "officer_id"]
    # a record without an officer hashes as records did before the column existed
    old_content = anonymous.as_row()[: len(CONTENT) - 1]
    assert anonymous.record_hash == hash_content(anonymous.prev_hash, old_content, "w1")
    assert asked.record_hash != hash_content(
        asked.prev_hash, asked.as_row()[: len(CONTENT) - 1], "w1"
    )


def test_a_store_from_before_the_officer_column_is_migrated(store: DecisionStore) -> None:
    version_1 = [statement.replace("officer_id TEXT,", "") for statement in store.ddl()]
    assert version_1 != store.ddl(), "the old schema differs only by the officer column"
    old_columns = [c for c in COLUMNS if c != "officer_id"]
    [old] = make_records(1, "loan-old")
    with store.transaction() as cur:
        for statement in version_1:
            cur.execute(statement)
        cur.execute("INSERT INTO decision_store_meta (name, value) VALUES ('schema_version', 1)")
        cur.execute(
            store._sql(
                "INSERT INTO decision_writers (writer_id, started_at, last_seq, last_hash, "
                "anchor_seq, anchor_hash, checked_at) VALUES (?, ?, 0, ?, 0, ?, ?)"
            ),
            ("old", old.decided_at, "0" * 64, "0" * 64, old.decided_at),
        )
    old = old.chained("old", 1, "0" * 64)  # as the old code chained it: no officer hashed
    row = dict(zip(COLUMNS, old.as_row(), strict=True))
    with store.transaction() as cur:
        cur.execute(
            store._sql(
                f"INSERT INTO decisions ({', '.join(old_columns)}) "
                f"VALUES ({', '.join('?' * len(old_columns))})"
            ),
            [row[c] for c in old_columns],
        )
        cur.execute(
            store._sql(
                "UPDATE decision_writers SET last_seq = 1, last_hash = ? WHERE writer_id = 'old'"
            ),
            (old.record_hash,),
        )

    assert store.schema_version() == SCHEMA_VERSION == 2
    found = store.get(old.decision_id)
    assert found is not None
    assert found.officer_id is None
    [new] = ChainWriter(store, "new").append(make_records(1, "loan-new", officer_id="officer.n"))
    assert store.get(new.decision_id) == new
    assert verify(store).problems == [], "the old record verifies beside the new one"
    again = open_store(store.url)
    try:
        assert again.schema_version() == 2, "opening a migrated store again changes nothing"
    finally:
        again.close()


def test_a_postgresql_connection_left_inside_a_transaction_is_replaced(postgres: Postgres) -> None:
    # a shutdown that aborts a pipeline can leave the connection open, not broken, and inside
    # its transaction: every later write on it failed
    store = open_store(postgres.create_database())
    try:
        stuck = store._connect()  # type: ignore[attr-defined]
        stuck.execute("BEGIN")  # inside a transaction the failed one will not end
        with pytest.raises(psycopg.errors.DivisionByZero), store.transaction() as cursor:
            cursor.execute("SELECT 1 / 0")
        assert stuck.closed
        with store.transaction() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.connection is not stuck
    finally:
        store.close()
