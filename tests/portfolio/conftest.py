"""Portfolio fixtures: the training applicants as a book with account ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from credit_risk.schema import FEATURES
from credit_risk.training.data import applicant_records, load_dataset


@pytest.fixture(scope="session")
def applicants() -> list[dict[str, Any]]:
    """The shipped data set's 1,000 applicants as API payloads."""
    return applicant_records(load_dataset().X)


def book(records: list[dict[str, Any]], first_id: int = 1000) -> pa.Table:
    """Applicants as a table with an `account_id` column first (and the schema's column types)."""
    columns: dict[str, Any] = {"account_id": list(range(first_id, first_id + len(records)))}
    columns |= {name: [r[name] for r in records] for name in FEATURES}
    return pa.table(columns)


def write(table: pa.Table, path: Path) -> Path:
    """Parquet or CSV by extension."""
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path
