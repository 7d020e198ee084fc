"""The two inputs of a back-test: the decision log (JSON lines) and an outcomes file.

Outcomes are validated whole before anything is computed: a missing column, an outcome other
than good/bad, an unreadable date or a decision id given twice is an error naming the line
(`BacktestInputError`). Ids that match no logged decision are not an error: logs rotate and
pods come and go, so they are counted and listed in the report instead.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

OUTCOME_COLUMNS: Final = ("decision_id", "outcome", "observed_at")
OUTCOMES: Final = frozenset({"good", "bad"})
PARQUET_HINT: Final = "pip install 'credit-risk-bento[portfolio]' (or `make setup`)"


class BacktestInputError(ValueError):
    """Input the back-test refuses; the message names the file and line."""


@dataclass(frozen=True)
class Outcome:
    """What became of one decision's loan."""

    decision_id: str
    bad: bool
    observed_at: str
    line: int


def read_decisions(path: Path) -> dict[str, dict[str, Any]]:
    """Every logged decision by id. `path` is a monitoring log path (one server's, or a shared
    one with a directory per pod), a folder of log files, or one file."""
    from credit_risk.serving.decision_log import decision_log_files  # noqa: PLC0415

    files = (
        [path]
        if path.is_file()
        else decision_log_files(path) or sorted(p for p in path.rglob("*.log*") if p.is_file())
    )
    if not files:
        msg = f"{path}: no decision log files (*.log) found"
        raise BacktestInputError(msg)
    decisions: dict[str, dict[str, Any]] = {}
    for file in files:
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                decisions.setdefault(str(record["decision_id"]), record)
            except (ValueError, KeyError, TypeError):
                msg = f"{file} line {number}: not a decision record"
                raise BacktestInputError(msg) from None
    return decisions


def read_outcomes(path: Path) -> list[Outcome]:
    """The outcomes file (CSV, or Parquet by its suffix), validated whole."""
    if not path.is_file():
        msg = f"{path}: no such file"
        raise BacktestInputError(msg)
    if path.suffix.lower() in {".parquet", ".pq"}:
        rows, columns, first = _parquet_rows(path)
    else:
        rows, columns, first = _csv_rows(path)
    missing = [c for c in OUTCOME_COLUMNS if c not in columns]
    if missing:
        msg = f"{path}: missing column(s) {', '.join(missing)} (it has: {', '.join(columns)})"
        raise BacktestInputError(msg)
    outcomes = list(_validated(path, rows, first))
    if not outcomes:
        msg = f"{path}: no outcome rows"
        raise BacktestInputError(msg)
    return outcomes


def _validated(path: Path, rows: Iterable[dict[str, Any]], first: int) -> Iterator[Outcome]:
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=first):
        where = f"{path} line {line}"
        decision_id = str(row["decision_id"] or "").strip()
        if not decision_id:
            msg = f"{where}: empty decision_id"
            raise BacktestInputError(msg)
        if decision_id in seen:
            msg = f"{where}: decision_id {decision_id} already given on line {seen[decision_id]}"
            raise BacktestInputError(msg)
        seen[decision_id] = line
        outcome = str(row["outcome"] or "").strip().lower()
        if outcome not in OUTCOMES:
            msg = f"{where}: outcome {row['outcome']!r} is not 'good' or 'bad'"
            raise BacktestInputError(msg)
        observed = row["observed_at"]
        try:
            observed_at = (
                observed if isinstance(observed, datetime) else datetime.fromisoformat(observed)
            )
        except (TypeError, ValueError):
            msg = f"{where}: observed_at {observed!r} is not an ISO date or date-time"
            raise BacktestInputError(msg) from None
        yield Outcome(decision_id, outcome == "bad", observed_at.isoformat(), line)


def _csv_rows(path: Path) -> tuple[list[dict[str, Any]], list[str], int]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        return list(reader), columns, 2  # line 1 is the header


def _parquet_rows(path: Path) -> tuple[list[dict[str, Any]], list[str], int]:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 (optional: the portfolio extra)
    except ImportError:
        msg = f"reading Parquet needs pyarrow: {PARQUET_HINT}"
        raise BacktestInputError(msg) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # any unreadable file means the same thing
        msg = f"{path}: not a readable Parquet file ({exc})"
        raise BacktestInputError(msg) from None
    return table.to_pylist(), list(table.column_names), 1  # rows counted from 1
