"""Why a write failed, in one word: an error that says no more than `error` gives the cause of
the one it was raised while handling, as psycopg's does when a shutdown aborts a pipeline."""

from __future__ import annotations

import psycopg
from psycopg import errors

from credit_risk.decision_store.errors import cause_of


def _raised_while_handling(first: BaseException, then: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:
            raise then  # noqa: B904 (the implicit context is what psycopg leaves)
    except BaseException as exc:
        return exc


def test_a_pipeline_left_by_a_shutdown_is_the_database_down() -> None:
    shutdown = errors.AdminShutdown("terminating connection due to administrator command")
    busy = psycopg.OperationalError("cannot exit pipeline mode while busy")
    assert cause_of(busy) == "error"
    assert cause_of(_raised_while_handling(shutdown, busy)) == "database_down"


def test_a_specific_cause_is_kept_whatever_came_before() -> None:
    refused = errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")
    shutdown = errors.AdminShutdown("terminating connection due to administrator command")
    assert cause_of(_raised_while_handling(shutdown, refused)) == "read_only"


def test_an_error_with_nothing_before_it_stays_an_error() -> None:
    assert cause_of(ValueError("something else")) == "error"
    assert cause_of(_raised_while_handling(KeyError("k"), ValueError("v"))) == "error"


def test_an_error_of_ours_is_not_blamed_on_the_database_it_followed() -> None:
    shutdown = errors.AdminShutdown("terminating connection due to administrator command")
    assert cause_of(_raised_while_handling(shutdown, TypeError("a bug of ours"))) == "error"
