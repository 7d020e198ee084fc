"""Both backends for every store test: a fresh SQLite file, and a fresh database on a real
PostgreSQL server (skipped with the reason where none is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from credit_risk.decision_store import DecisionStore, open_store
from tests.postgres import Postgres, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session."""
    yield from start_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[DecisionStore]:
    """An empty store on each backend."""
    opened = open_store(store_url)
    yield opened
    opened.close()
