"""The two inputs of a back-test: the decision store, and the outcomes (loaded into the store
with `credit-risk outcomes load`, or read from a file).

An outcomes file is validated whole before anything is computed: a missing column, an outcome
other than good/bad, an unreadable date or a decision id given twice is an error naming the line
(`BacktestInputError`). Loading it into the store also refuses an outcome for an unknown
decision, or one observed before its decision. A file read directly by the back-test may name
decisions the store no longer holds (purged): those are counted and listed in the report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from credit_risk.decision_store import DecisionStore

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


def read_decisions(store: DecisionStore) -> dict[str, dict[str, Any]]:
    """Every stored decision by id, as the back-test reads it: the outputs, `decided_at`, and
    the challenger's shadow decision under `challenger` when one was scored (None if lost)."""
    decisions: dict[str, dict[str, Any]] = {}
    for r in store.records():
        record: dict[str, Any] = {
            "decision_id": r.decision_id,
            "decided_at": r.decided_at,
            "model_version": r.model_version,
            "probability_of_default": r.probability_of_default,
            "score": r.score,
            "risk_band": r.risk_band,
            "decision": r.decision,
        }
        if r.challenger is not None:
            record["challenger"] = json.loads(r.challenger)
        decisions[r.decision_id] = record
    return decisions


def stored_outcomes(store: DecisionStore) -> list[Outcome]:
    """The outcomes loaded into the store (`credit-risk outcomes load`)."""
    return [
        Outcome(o.decision_id, o.outcome == "bad", o.observed_at, 0)
        for o in store.outcomes().values()
    ]


def check_against_decisions(path: Path, outcomes: list[Outcome], decided: dict[str, str]) -> None:
    """Refuse, naming the row, an outcome for a decision the store does not hold or one
    observed before its decision was made (`decided`: decision_id -> decided_at)."""
    for o in outcomes:
        where = f"{path} line {o.line}"
        decided_at = decided.get(o.decision_id)
        if decided_at is None:
            msg = f"{where}: decision_id {o.decision_id} is in no stored decision"
            raise BacktestInputError(msg)
        if observed_before(o.observed_at, decided_at):
            msg = (
                f"{where}: outcome observed at {o.observed_at}, before its decision "
                f"{o.decision_id} was made ({decided_at})"
            )
            raise BacktestInputError(msg)


def observed_before(observed_at: str, decided_at: str) -> bool:
    """Whether an outcome's date (a date, or a date-time; naive = UTC) is before the decision."""
    decided = datetime.fromisoformat(decided_at)
    observed = datetime.fromisoformat(observed_at)
    if len(observed_at) <= len("2026-01-01"):
        return observed.date() < decided.date()
    if observed.tzinfo is None:
        observed = observed.replace(tzinfo=UTC)
    return observed < decided


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
        date_only = isinstance(observed, str) and len(observed.strip()) == len("2026-01-01")
        text = observed_at.date().isoformat() if date_only else observed_at.isoformat()
        yield Outcome(decision_id, outcome == "bad", text, line)


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
