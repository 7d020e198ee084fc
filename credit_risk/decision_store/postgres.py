"""The PostgreSQL backend (psycopg 3), for several pods writing to one database.

One connection per process, used from the recorder's worker thread; a connection that broke
(the server restarted, the network dropped), or that a failed transaction left inside it, is
replaced at the next call, so the store recovers by itself once the database is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import pq

from credit_risk.decision_store.store import DecisionStore

CONNECT_TIMEOUT_S: Final = 3
"""How long a connection attempt may take before the write fails as `unreachable`."""
SCHEMA_LOCK: Final = 0x6372_6473
"""Advisory lock key that serialises schema creation between processes."""


class PostgresStore(DecisionStore):
    """The decision store in a PostgreSQL database."""

    placeholder = "%s"
    real = "DOUBLE PRECISION"
    integer = "BIGINT"
    schema_lock = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is not None and (self._connection.closed or self._connection.broken):
            self._connection = None
        if self._connection is None:
            self._connection = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="credit-risk",
            )
        return self._connection

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on the process's connection; a broken connection is dropped."""
        connection = self._connect()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                yield cursor
        except psycopg.Error:
            if not _reusable(connection):
                connection.close()
                self._connection = None
            raise

    def close(self) -> None:
        """Close the connection (a new call opens another)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _reusable(connection: psycopg.Connection[Any]) -> bool:
    """Whether a connection can take the next transaction after one failed: open, and back out
    of its transaction and pipeline (a pipeline aborted by the server's shutdown can leave both
    open, on a connection psycopg does not call broken, and every later query then fails)."""
    return (
        not (connection.closed or connection.broken)
        and connection.info.transaction_status == pq.TransactionStatus.IDLE
        and connection.pgconn.pipeline_status == pq.PipelineStatus.OFF
    )
