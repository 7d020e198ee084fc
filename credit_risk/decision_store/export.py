"""Decisions out of the store, as JSON lines or Parquet, for archives and analysis.

Each row holds every column as stored, the JSON columns as their exact text, so an exported
record can still be checked against its hash. The file is written under a temporary name in
the same directory and renamed once complete: a failed export leaves no partial file. Parquet
needs pyarrow (the `portfolio` extra), imported only here and only then.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from credit_risk.decision_store.errors import StoreError
from credit_risk.decision_store.records import COLUMNS, DecisionRecord
from credit_risk.decision_store.store import DecisionStore

FORMATS: Final = ("jsonl", "parquet")
PARQUET_HINT: Final = (
    "Parquet export needs pyarrow: pip install 'credit-risk-bento[portfolio]' (or make setup)"
)
ROWS_PER_GROUP: Final = 50_000


def export(
    store: DecisionStore, output: Path, fmt: str, since: str | None, until: str | None
) -> int:
    """Write the decisions with `since <= decided_at < until` to `output`; returns the count."""
    if fmt not in FORMATS:
        msg = f"format must be one of {', '.join(FORMATS)}, not {fmt!r}"
        raise StoreError(msg)
    writer = _write_parquet if fmt == "parquet" else _write_jsonl
    if fmt == "parquet":
        _pyarrow()  # refuse before touching the store or the disk
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        count = writer(store.records(since=since, until=until), tmp)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _rows(records: Iterable[DecisionRecord]) -> Iterable[dict[str, Any]]:
    for r in records:
        yield dict(zip(COLUMNS, r.as_row(), strict=True))


def _write_jsonl(records: Iterable[DecisionRecord], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in _rows(records):
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
    return count


def _pyarrow() -> Any:
    try:
        import pyarrow as pa  # noqa: PLC0415 (optional: the portfolio extra)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise StoreError(PARQUET_HINT) from None
    return pa, pq


def _write_parquet(records: Iterable[DecisionRecord], path: Path) -> int:
    pa, pq = _pyarrow()
    text, real, integer = pa.string(), pa.float64(), pa.int64()
    types = {"probability_of_default": real, "threshold": real, "score": integer, "seq": integer}
    schema = pa.schema([(name, types.get(name, text)) for name in COLUMNS])
    count = 0
    with pq.ParquetWriter(path, schema) as out:
        batch: list[dict[str, Any]] = []
        for row in _rows(records):
            batch.append(row)
            if len(batch) == ROWS_PER_GROUP:
                out.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or not count:
            out.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
