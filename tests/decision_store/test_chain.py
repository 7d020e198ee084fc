"""Tamper evidence on both backends: `verify` names every edited, deleted or reordered record,
and a retention purge leaves a chain that still verifies."""

from __future__ import annotations

from datetime import UTC, datetime

from credit_risk.decision_store import DecisionRecord, DecisionStore
from credit_risk.decision_store.chain import ChainWriter, verify
from tests.decision_store.records_for_tests import make_records


def _chain(store: DecisionStore, n: int = 6, writer: str = "w1") -> list[DecisionRecord]:
    chain = ChainWriter(store, writer)
    records: list[DecisionRecord] = []
    for k in range(0, n, 2):  # a few commits, as a busy worker makes them
        records += chain.append(make_records(2, when=datetime(2026, 1, 1 + k, tzinfo=UTC)))
    return records


def _tamper(store: DecisionStore, sql: str, *params: object) -> None:
    with store.transaction() as cur:
        cur.execute(store._sql(sql), params)


def _problems(store: DecisionStore) -> list[tuple[str, str | None]]:
    return [(p.kind, p.decision_id) for p in verify(store).problems]


def test_an_untouched_store_verifies(store: DecisionStore) -> None:
    _chain(store)
    _chain(store, 4, writer="w2")
    result = verify(store)
    assert (result.records, result.writers, result.problems) == (10, 2, [])


def test_an_edited_record_is_named(store: DecisionStore) -> None:
    records = _chain(store)
    _tamper(
        store,
        "UPDATE decisions SET decision = 'approve' WHERE decision_id = ?",
        records[3].decision_id,
    )
    assert _problems(store) == [("edited", records[3].decision_id)]
    [problem] = verify(store).problems
    assert problem.line().startswith(f"EDITED: record {records[3].decision_id} (writer w1, #4)")


def test_an_edit_with_its_hash_recomputed_still_breaks_the_next_link(store: DecisionStore) -> None:
    records = _chain(store)
    edited = DecisionRecord(*records[2].as_row())
    true_hash = edited.content_hash(edited.prev_hash)
    forged = f"{int(true_hash[0], 16) ^ 1:x}{true_hash[1:]}"  # one hex digit off, whatever it is
    _tamper(
        store,
        "UPDATE decisions SET record_hash = ? WHERE decision_id = ?",
        forged,
        records[2].decision_id,
    )
    kinds = _problems(store)
    assert ("edited", records[2].decision_id) in kinds
    assert ("deleted", records[3].decision_id) in kinds


def test_a_deleted_record_is_named_by_the_one_after_the_gap(store: DecisionStore) -> None:
    records = _chain(store)
    _tamper(store, "DELETE FROM decisions WHERE decision_id = ?", records[2].decision_id)
    assert _problems(store) == [("deleted", records[3].decision_id)]


def test_deleting_the_newest_record_is_seen_against_the_chain_head(store: DecisionStore) -> None:
    records = _chain(store)
    _tamper(store, "DELETE FROM decisions WHERE decision_id = ?", records[-1].decision_id)
    [problem] = verify(store).problems
    assert problem.kind == "deleted"
    assert f"after record {records[-2].decision_id}" in problem.line()


def test_two_swapped_records_are_named_as_reordered(store: DecisionStore) -> None:
    records = _chain(store)
    a, b = records[1], records[4]
    _tamper(store, "UPDATE decisions SET seq = -1 WHERE decision_id = ?", a.decision_id)
    _tamper(store, "UPDATE decisions SET seq = ? WHERE decision_id = ?", a.seq, b.decision_id)
    _tamper(store, "UPDATE decisions SET seq = ? WHERE decision_id = ?", b.seq, a.decision_id)
    problems = _problems(store)
    assert {kind for kind, _ in problems} == {"reordered"}
    assert {a.decision_id, b.decision_id} <= {i for _, i in problems}


def test_a_deleted_chain_head_row_is_named(store: DecisionStore) -> None:
    _chain(store)
    _tamper(store, "DELETE FROM decision_writers WHERE writer_id = 'w1'")
    assert _problems(store) == [("unknown_writer", None)]


def test_after_a_purge_what_remains_still_verifies_and_tampering_still_shows(
    store: DecisionStore,
) -> None:
    records = _chain(store, 8)
    _chain(store, 4, writer="w2")
    deleted = store.purge(before="2026-01-04")
    assert deleted == 4 + 4  # w1: the records of Jan 1 and 3; w2: the same days
    assert verify(store).problems == []
    _tamper(store, "DELETE FROM decisions WHERE decision_id = ?", records[4].decision_id)
    assert _problems(store) == [("deleted", records[5].decision_id)]


def test_deleting_the_oldest_remaining_record_after_a_purge_is_seen(store: DecisionStore) -> None:
    records = _chain(store, 6)
    store.purge(before="2026-01-02")
    _tamper(store, "DELETE FROM decisions WHERE decision_id = ?", records[2].decision_id)
    assert _problems(store) == [("deleted", records[3].decision_id)]


def test_the_officer_is_covered_by_the_hash(store: DecisionStore) -> None:
    chain = ChainWriter(store, "w1")
    asked = chain.append(make_records(2, officer_id="officer.a"))
    chain.append(make_records(1))
    assert verify(store).problems == []
    for value in ("officer.b", None):  # another officer, or the officer removed
        _tamper(
            store,
            "UPDATE decisions SET officer_id = ? WHERE decision_id = ?",
            value,
            asked[1].decision_id,
        )
        assert _problems(store) == [("edited", asked[1].decision_id)]
    _tamper(store, "UPDATE decisions SET officer_id = 'officer.z' WHERE officer_id IS NULL")
    edited = {decision_id for kind, decision_id in _problems(store) if kind == "edited"}
    assert len(edited) == 2, "an officer added to a record without one shows too"
