"""The embedded backend: one SQLite file in WAL mode, no set-up.

Several API worker processes write to the same file: WAL lets readers run beside the one
writer, and a busy timeout makes a writer wait for the lock instead of failing. A decision is
answered only once its commit is in the write-ahead log; how far that log is synced is the URL's
`synchronous` (location.py: NORMAL by default, FULL to sync at every commit), and the group
commit (writer.py) makes that one commit per event-loop turn, not per request.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from credit_risk.decision_store.errors import StoreUnavailableError
from credit_risk.decision_store.store import DecisionStore

BUSY_TIMEOUT_MS: Final = 5000
"""How long a writer waits for another process's transaction before it gives up (`busy`)."""


class SqliteStore(DecisionStore):
    """The decision store in one SQLite file."""

    def __init__(self, url: str, path: Path, synchronous: str = "NORMAL") -> None:
        super().__init__(url)
        self.path = path
        self.synchronous = synchronous
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                connection = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
            except sqlite3.Error as exc:
                raise self._why_not(exc) from exc
            try:
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            except sqlite3.Error as exc:
                connection.close()
                raise self._why_not(exc) from exc
            self._connection = connection
        return self._connection

    def _why_not(self, exc: sqlite3.Error) -> Exception:
        """SQLite says only "unable to open database file": say whether the directory is
        missing or cannot be written (WAL mode creates files beside the database)."""
        folder = self.path.parent
        if not folder.is_dir():
            return StoreUnavailableError("cannot_open", f"{folder} does not exist")
        if not os.access(folder, os.W_OK):
            return StoreUnavailableError("read_only", f"{folder} is not writable")
        return exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """`BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout),
        so two processes never deadlock upgrading a read to a write. After an operational
        failure the connection is closed: SQLite falls back to a read-only handle when the
        file cannot be opened for writing, and keeps it, so only a new one recovers."""
        connection = self._connect()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
        except sqlite3.OperationalError:
            self.close()
            raise

    def touch(self, writer_id: str) -> None:
        """A passive checkpoint, then the store's probe write. On a full disk the WAL can
        still take a one-page write while records no longer fit; copying the WAL into the
        database needs real space, so readiness does not flap back on while writes fail."""
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        super().touch(writer_id)

    def close(self) -> None:
        """Close the file (a new call opens it again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
