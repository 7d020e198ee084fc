"""Which store a URL opens, and how far an SQLite commit is synced before an answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from credit_risk.decision_store import StoreError, open_store
from credit_risk.decision_store.sqlite import SqliteStore

SYNCHRONOUS = {"NORMAL": 1, "FULL": 2}
"""SQLite's `PRAGMA synchronous` answers."""


@pytest.mark.parametrize(
    ("query", "level"),
    [("", "NORMAL"), ("?synchronous=full", "FULL"), ("?synchronous=normal", "NORMAL")],
)
def test_the_sync_level_comes_from_the_url(query: str, level: str, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'd.sqlite'}{query}")
    assert isinstance(store, SqliteStore)
    store.ensure_schema()
    with store.transaction() as cur:
        assert cur.execute("PRAGMA synchronous").fetchone()[0] == SYNCHRONOUS[level]
    store.close()


@pytest.mark.parametrize("query", ["?synchronous=off", "?synchronous=extra", "?cache=shared"])
def test_an_unknown_option_is_refused_naming_what_is_taken(query: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=re.escape("synchronous=normal|full")):
        open_store(f"sqlite:///{tmp_path / 'd.sqlite'}{query}")
