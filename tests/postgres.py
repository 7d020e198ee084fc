"""A real PostgreSQL server for tests (load_tests/postgres.py starts it); where no server
binaries are installed the tests that need one skip with the reason (`.ci/run` installs the
package in CI: `make postgresql`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from load_tests.postgres import BIN_DIRS, MISSING, Postgres, postgres_server

__all__ = ["Postgres", "start_postgres"]


def start_postgres() -> Iterator[Postgres]:
    """A server for as long as the generator is open (a fixture's body)."""
    if not BIN_DIRS:
        pytest.skip(MISSING)
    with postgres_server() as server:
        yield server
