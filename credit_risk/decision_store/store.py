"""The store's one interface and its SQL, shared by both backends.

A backend (`sqlite.SqliteStore`, `postgres.PostgresStore`) supplies a connection, a
transaction, its placeholder and column types; everything else (the schema, the chained
append, retrieval, retention, outcomes) is written once here. Every method is synchronous: the
service calls them from one worker thread per process (`writer.DecisionRecorder`), the command
line directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

from credit_risk.decision_store.records import COLUMNS, GENESIS_HASH, DecisionRecord, now_text

SCHEMA_VERSION: Final = 2
"""1: the first schema; 2: `officer_id` (who asked), added to an older store where missing."""
ADDED_COLUMNS: Final = {"officer_id": "TEXT"}
"""Columns added to `decisions` after version 1: `ensure_schema` adds each one a store lacks."""
PAGE: Final = 5000
"""Records per query while streaming."""
CHUNK: Final = 500
"""Ids per `IN (...)` query."""


@dataclass(frozen=True)
class Writer:
    """One writer's chain: its head (last record) and its anchor (the last purged record)."""

    writer_id: str
    started_at: str
    last_seq: int
    last_hash: str
    anchor_seq: int
    anchor_hash: str


@dataclass(frozen=True)
class Outcome:
    """What became of one decision's loan."""

    decision_id: str
    outcome: str
    observed_at: str


class DecisionStore(ABC):
    """One decision store: a database URL and the SQL both backends share."""

    placeholder: str = "?"
    real: str = "REAL"
    integer: str = "INTEGER"
    schema_lock: str | None = None
    """A statement that serialises schema creation between processes, where the transaction
    alone does not."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._schema_ready = False

    # --- what a backend supplies -------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction: committed on exit, rolled back on an error."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    # --- schema ------------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def ddl(self) -> list[str]:
        """The schema, in this backend's column types."""
        real, integer = self.real, self.integer
        return [
            f"""CREATE TABLE IF NOT EXISTS decisions (
                decision_id TEXT PRIMARY KEY,
                application_id TEXT,
                decided_at TEXT NOT NULL,
                model_version TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                inputs TEXT NOT NULL,
                probability_of_default {real} NOT NULL,
                score {integer} NOT NULL,
                risk_band TEXT NOT NULL,
                decision TEXT NOT NULL,
                threshold {real} NOT NULL,
                reasons TEXT NOT NULL,
                challenger TEXT,
                recourse TEXT,
                officer_id TEXT,
                writer_id TEXT NOT NULL,
                seq {integer} NOT NULL,
                prev_hash TEXT NOT NULL,
                record_hash TEXT NOT NULL,
                UNIQUE (writer_id, seq))""",
            "CREATE INDEX IF NOT EXISTS decisions_application_id ON decisions (application_id)",
            "CREATE INDEX IF NOT EXISTS decisions_decided_at ON decisions (decided_at)",
            f"""CREATE TABLE IF NOT EXISTS decision_writers (
                writer_id TEXT PRIMARY KEY,
                started_at TEXT NOT NULL,
                last_seq {integer} NOT NULL,
                last_hash TEXT NOT NULL,
                anchor_seq {integer} NOT NULL,
                anchor_hash TEXT NOT NULL,
                checked_at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS decision_outcomes (
                decision_id TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                observed_at TEXT NOT NULL,
                loaded_at TEXT NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS decision_store_meta (
                name TEXT PRIMARY KEY, value {integer} NOT NULL)""",
        ]

    def ensure_schema(self) -> None:
        """Create the tables and indexes where they are missing (idempotent)."""
        if self._schema_ready:
            return
        with self.transaction() as cur:
            if self.schema_lock:
                cur.execute(self.schema_lock)
            for statement in self.ddl():
                cur.execute(statement)
            cur.execute("SELECT * FROM decisions WHERE 1 = 0")
            present = {column[0] for column in cur.description}
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:  # a store written before the column: migrate it
                    cur.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
            cur.execute(
                self._sql(
                    "INSERT INTO decision_store_meta (name, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value "
                    "WHERE decision_store_meta.value < excluded.value"
                ),
                (SCHEMA_VERSION,),
            )
        self._schema_ready = True

    def schema_version(self) -> int:
        """The version the store's schema is at (`SCHEMA_VERSION` once `ensure_schema` ran)."""
        self.ensure_schema()
        with self.transaction() as cur:
            cur.execute("SELECT value FROM decision_store_meta WHERE name = 'schema_version'")
            return int(cur.fetchone()[0])

    # --- the chained append ------------------------------------------------------------------

    def register_writer(self, writer_id: str) -> Writer:
        """The writer's chain head, created empty for a new writer."""
        self.ensure_schema()
        now = now_text()
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO decision_writers (writer_id, started_at, last_seq, last_hash, "
                    "anchor_seq, anchor_hash, checked_at) VALUES (?, ?, 0, ?, 0, ?, ?) "
                    "ON CONFLICT (writer_id) DO NOTHING"
                ),
                (writer_id, now, GENESIS_HASH, GENESIS_HASH, now),
            )
        writer = self.writer(writer_id)
        assert writer is not None
        return writer

    def append(self, writer_id: str, records: Sequence[DecisionRecord], after_seq: int) -> None:
        """Insert chained records and move the writer's head, in one transaction; refused if
        the head is no longer at `after_seq` (another process writing as the same writer)."""
        last = records[-1]
        insert = self._sql(
            f"INSERT INTO decisions ({', '.join(COLUMNS)}) "  # noqa: S608 (constants only)
            f"VALUES ({', '.join('?' * len(COLUMNS))})"
        )
        with self.transaction() as cur:
            cur.executemany(insert, records)  # a record is its row
            cur.execute(
                self._sql(
                    "UPDATE decision_writers SET last_seq = ?, last_hash = ?, checked_at = ? "
                    "WHERE writer_id = ? AND last_seq = ?"
                ),
                (last.seq, last.record_hash, last.decided_at, writer_id, after_seq),
            )
            if cur.rowcount != 1:
                msg = f"writer {writer_id}: its chain head moved (two processes, one writer id?)"
                raise RuntimeError(msg)

    def touch(self, writer_id: str) -> None:
        """A write that stores nothing new: readiness asks it after a failure."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("UPDATE decision_writers SET checked_at = ? WHERE writer_id = ?"),
                (now_text(), writer_id),
            )

    # --- reading -----------------------------------------------------------------------------

    def _select(self, where: str = "", order: str = "") -> str:
        # only constant column names, clauses and placeholders are ever interpolated
        return self._sql(f"SELECT {', '.join(COLUMNS)} FROM decisions {where} {order}")  # noqa: S608

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[DecisionRecord]:
        with self.transaction() as cur:
            cur.execute(sql, tuple(params))
            return [DecisionRecord(*row) for row in cur.fetchall()]

    def get(self, decision_id: str) -> DecisionRecord | None:
        """One decision by its id."""
        self.ensure_schema()
        found = self._fetch(self._select("WHERE decision_id = ?"), (decision_id,))
        return found[0] if found else None

    def by_application(self, application_id: str) -> list[DecisionRecord]:
        """Every decision made for one application reference, oldest first."""
        self.ensure_schema()
        sql = self._select("WHERE application_id = ?", order="ORDER BY decided_at, writer_id, seq")
        return self._fetch(sql, (application_id,))

    def records(
        self, since: str | None = None, until: str | None = None, *, chain_order: bool = False
    ) -> Iterator[DecisionRecord]:
        """Decisions with `since <= decided_at < until`, by time (or writer by writer, in chain
        order), fetched in pages so a large store streams."""
        self.ensure_schema()
        where = "WHERE decided_at >= ? AND decided_at < ?"
        params = (since or "", until or "~")
        keys = ("writer_id", "seq") if chain_order else ("decided_at", "writer_id", "seq")
        listed = ", ".join(keys)
        after = f" AND ({listed}) > ({', '.join('?' * len(keys))})"
        last: tuple[Any, ...] | None = None
        while True:
            sql = self._select(where + (after if last else ""), f"ORDER BY {listed} LIMIT {PAGE}")
            page = self._fetch(sql, params + (last or ()))
            yield from page
            if len(page) < PAGE:
                return
            last = tuple(getattr(page[-1], key) for key in keys)

    def count(self) -> int:
        """How many decisions are stored."""
        self.ensure_schema()
        with self.transaction() as cur:
            cur.execute("SELECT count(*) FROM decisions")
            return int(cur.fetchone()[0])

    def known_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """decision_id -> decided_at for those of `ids` that are stored."""
        self.ensure_schema()
        found: dict[str, str] = {}
        with self.transaction() as cur:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                marks = ", ".join("?" * len(chunk))
                cur.execute(
                    self._sql(
                        "SELECT decision_id, decided_at FROM decisions "  # noqa: S608
                        f"WHERE decision_id IN ({marks})"
                    ),
                    chunk,
                )
                found.update({row[0]: row[1] for row in cur.fetchall()})
        return found

    def writer(self, writer_id: str) -> Writer | None:
        """One writer's chain head and anchor."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT writer_id, started_at, last_seq, last_hash, anchor_seq, anchor_hash "
                    "FROM decision_writers WHERE writer_id = ?"
                ),
                (writer_id,),
            )
            row = cur.fetchone()
        return Writer(*row) if row else None

    def writers(self) -> list[Writer]:
        """Every writer's chain head and anchor."""
        self.ensure_schema()
        with self.transaction() as cur:
            cur.execute(
                "SELECT writer_id, started_at, last_seq, last_hash, anchor_seq, anchor_hash "
                "FROM decision_writers ORDER BY writer_id"
            )
            return [Writer(*row) for row in cur.fetchall()]

    # --- retention ---------------------------------------------------------------------------

    def purge(self, before: str) -> int:
        """Delete every writer's records decided before `before` (a prefix of its chain), and
        their outcomes; the last one deleted becomes the writer's anchor, so what remains still
        verifies. Returns the number of decisions deleted."""
        self.ensure_schema()
        deleted = 0
        for writer in self.writers():
            with self.transaction() as cur:
                cur.execute(
                    self._sql(
                        "SELECT max(seq) FROM decisions WHERE writer_id = ? AND decided_at < ?"
                    ),
                    (writer.writer_id, before),
                )
                upto = cur.fetchone()[0]
                if upto is None:
                    continue
                cur.execute(
                    self._sql("SELECT record_hash FROM decisions WHERE writer_id = ? AND seq = ?"),
                    (writer.writer_id, upto),
                )
                anchor_hash = cur.fetchone()[0]
                cur.execute(
                    self._sql(
                        "DELETE FROM decision_outcomes WHERE decision_id IN (SELECT decision_id "
                        "FROM decisions WHERE writer_id = ? AND seq <= ?)"
                    ),
                    (writer.writer_id, upto),
                )
                cur.execute(
                    self._sql("DELETE FROM decisions WHERE writer_id = ? AND seq <= ?"),
                    (writer.writer_id, upto),
                )
                deleted += cur.rowcount
                cur.execute(
                    self._sql(
                        "UPDATE decision_writers SET anchor_seq = ?, anchor_hash = ? "
                        "WHERE writer_id = ?"
                    ),
                    (upto, anchor_hash, writer.writer_id),
                )
        return deleted

    # --- outcomes ----------------------------------------------------------------------------

    def put_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """Store outcomes (validated by the caller) in one transaction; an outcome already
        stored for a decision is replaced. Returns how many were written."""
        self.ensure_schema()
        loaded = now_text()
        with self.transaction() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO decision_outcomes (decision_id, outcome, observed_at, loaded_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (decision_id) DO UPDATE SET "
                    "outcome = excluded.outcome, observed_at = excluded.observed_at, "
                    "loaded_at = excluded.loaded_at"
                ),
                [(o.decision_id, o.outcome, o.observed_at, loaded) for o in outcomes],
            )
        return len(outcomes)

    def outcomes(self) -> dict[str, Outcome]:
        """Every stored outcome by decision id."""
        self.ensure_schema()
        with self.transaction() as cur:
            cur.execute("SELECT decision_id, outcome, observed_at FROM decision_outcomes")
            return {row[0]: Outcome(*row) for row in cur.fetchall()}
