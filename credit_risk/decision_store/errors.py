"""Why the store refused a write, in one short word a client and an operator can act on."""

from __future__ import annotations

import errno
import sqlite3
from typing import Final

CAUSES: Final = (
    "disk_full",
    "read_only",
    "cannot_open",
    "busy",
    "database_down",
    "unreachable",
    "io_error",
    "error",
)
"""Every cause a failed write is reported and counted under."""

_SQLITE: Final = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_READONLY": "read_only",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_IOERR": "io_error",
}
_ERRNO: Final = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EROFS: "read_only",
    errno.EACCES: "read_only",
    errno.EPERM: "read_only",
    errno.ECONNREFUSED: "database_down",
    errno.ETIMEDOUT: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
}
_POSTGRES: Final = {
    "53100": "disk_full",  # disk_full
    "53200": "error",  # out_of_memory
    "25006": "read_only",  # read_only_sql_transaction (a standby, or default_transaction_read_only)
    "57P01": "database_down",  # admin_shutdown
    "57P02": "database_down",  # crash_shutdown
    "57P03": "database_down",  # cannot_connect_now (starting or stopping)
    "08000": "unreachable",
    "08001": "unreachable",
    "08003": "database_down",
    "08006": "database_down",
    "40001": "busy",
    "40P01": "busy",
    "55P03": "busy",
}


class StoreError(Exception):
    """The store was asked something it cannot do (bad input, a missing database)."""


class StoreUnavailableError(Exception):
    """A write did not commit: nothing of it is stored; `cause` is one of `CAUSES`."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"decision store unavailable ({cause}){': ' + detail if detail else ''}")
        self.cause = cause
        self.detail = detail


def cause_of(exc: BaseException) -> str:
    """The short cause of a failed write, from SQLite's error name, PostgreSQL's SQLSTATE or
    the operating system's errno; for an error that says no more than `error`, from the one it
    was raised while handling (psycopg leaving an aborted pipeline raises "cannot exit pipeline
    mode while busy" over the server's own "terminating connection")."""
    seen: set[int] = set()
    cause = _own_cause(exc)
    while cause == "error" and _is_psycopg(exc) and id(exc) not in seen:
        seen.add(id(exc))
        earlier = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if earlier is None:
            break
        exc, cause = earlier, _own_cause(earlier)
    return cause


def _is_psycopg(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg")


def _own_cause(exc: BaseException) -> str:
    if isinstance(exc, StoreUnavailableError):
        return exc.cause
    if isinstance(exc, sqlite3.Error):
        return _sqlite_cause(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return _POSTGRES.get(sqlstate, "error")
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    return _postgres_connection_cause(exc)


def _sqlite_cause(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, cause in _SQLITE.items():
        if name.startswith(prefix):
            return cause
    text = str(exc).lower()
    if "disk is full" in text:
        return "disk_full"
    return "read_only" if "readonly" in text or "read-only" in text else "error"


def _postgres_connection_cause(exc: BaseException) -> str:
    """psycopg reports a failed or lost connection without a SQLSTATE: read its text. A host
    that cannot be reached (timeout, name, route) is `unreachable`; a server that refuses,
    closes or loses the connection is `database_down`."""
    if not _is_psycopg(exc):
        return "error"
    text = str(exc).lower()
    far = ("timeout", "timed out", "could not translate host name", "unreachable", "no route")
    if any(word in text for word in far):
        return "unreachable"
    return "database_down" if "connection" in text or "server" in text else "error"
