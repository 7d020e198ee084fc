"""The embedded backend: one SQLite file in WAL mode, no set-up.

Several API worker processes write to the same file: WAL lets readers run beside the one
writer, and a busy timeout makes a writer wait for the lock instead of failing. Each commit is
synced to disk (`synchronous=FULL`): a decision answered is a decision stored, even across a
power cut; the group commit (writer.py) makes that one sync per event-loop turn, not per request.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from credit_risk.decision_store.store import DecisionStore

BUSY_TIMEOUT_MS: Final = 5000
"""How long a writer waits for another process's transaction before it gives up (`busy`)."""


class SqliteStore(DecisionStore):
    """The decision store in one SQLite file."""

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS
            )
            try:
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """`BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout),
        so two processes never deadlock upgrading a read to a write."""
        connection = self._connect()
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
        try:
            cursor.execute("COMMIT")
        except sqlite3.Error:
            if connection.in_transaction:
                connection.rollback()
            raise

    def close(self) -> None:
        """Close the file (a new call opens it again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
