"""The group-commit recorder: one transaction per event-loop turn, callers resolved only after
the commit, and real failures (a missing directory, PostgreSQL stopped) refused with their cause,
counted, logged once, and healed by the next successful write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from credit_risk.decision_store import DecisionRecord, StoreUnavailableError, open_store
from credit_risk.decision_store.chain import verify
from credit_risk.decision_store.sqlite import SqliteStore
from credit_risk.decision_store.writer import DecisionRecorder
from tests.decision_store.records_for_tests import make_records
from tests.postgres import Postgres


class CountingStore(SqliteStore):
    """The real SQLite store, counting its transactions of appended records."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"sqlite:///{path}", path)
        self.appends: list[int] = []

    def append(self, writer_id: str, records: Sequence[DecisionRecord], after_seq: int) -> None:
        """Count, then append."""
        self.appends.append(len(records))
        super().append(writer_id, records, after_seq)


async def _record_all(recorder: DecisionRecorder, batches: list[list[DecisionRecord]]) -> list:
    return await asyncio.gather(*(recorder.record(b) for b in batches), return_exceptions=True)


def test_requests_of_one_event_loop_turn_are_committed_together(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "d.sqlite")
    recorder = DecisionRecorder(store, "api:test")
    batches = [make_records(1) for _ in range(20)] + [make_records(5)]
    results = asyncio.run(_record_all(recorder, batches))
    assert results == [None] * 21
    assert store.appends == [25]
    assert store.count() == 25
    assert verify(store).problems == []


def test_requests_arriving_during_a_commit_go_into_the_next_one(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "d.sqlite")
    recorder = DecisionRecorder(store, "api:test")

    async def staggered() -> None:
        first = asyncio.ensure_future(recorder.record(make_records(1)))
        await asyncio.sleep(0)  # the first commit starts
        later = [recorder.record(make_records(1)) for _ in range(10)]
        await asyncio.gather(first, *later)

    asyncio.run(staggered())
    assert sum(store.appends) == 11
    assert len(store.appends) <= 3
    assert verify(store).problems == []


def test_a_store_that_cannot_be_written_refuses_with_its_cause_until_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "not-yet"
    store = open_store(f"sqlite:///{home / 'd.sqlite'}")
    causes: list[str] = []
    recorder = DecisionRecorder(store, "api:test", on_failure=causes.append)

    async def scenario() -> None:
        for _ in range(3):
            results = await _record_all(recorder, [make_records(1), make_records(2)])
            assert all(isinstance(r, StoreUnavailableError) for r in results)
            assert {r.cause for r in results} == {"cannot_open"}
        assert not recorder.healthy
        assert not await recorder.ready()
        home.mkdir()
        assert await recorder.ready()
        assert recorder.healthy
        await recorder.record(make_records(1))

    with caplog.at_level(logging.WARNING, logger="credit_risk.decision_store.writer"):
        asyncio.run(scenario())
    assert causes == ["cannot_open"] * 4
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
    assert store.count() == 1


def test_postgresql_stopped_and_started_again(postgres: Postgres) -> None:
    store = open_store(postgres.create_database())
    causes: list[str] = []
    recorder = DecisionRecorder(store, "api:test", on_failure=causes.append)

    async def scenario() -> None:
        await recorder.record(make_records(3))
        postgres.stop()
        try:
            results = await _record_all(recorder, [make_records(1), make_records(1)])
            assert all(isinstance(r, StoreUnavailableError) for r in results), results
            assert not await recorder.ready()
        finally:
            postgres.start()
        assert await recorder.ready()
        await recorder.record(make_records(2))

    asyncio.run(scenario())
    assert set(causes) <= {"database_down", "unreachable"}
    assert causes
    assert store.count() == 5
    assert verify(store).problems == []
