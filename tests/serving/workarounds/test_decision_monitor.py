"""The decision-log monitor, in-process, and the canaries for why it exists: BentoML's default
monitor handles each logged value on its own and formats each record through the logging
machinery and python-json-logger."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bentoml._internal.monitoring.default import DefaultMonitor
from pythonjsonlogger.jsonlogger import JsonFormatter

from credit_risk.serving.workarounds.decision_monitor import JsonLinesMonitor

COLUMNS: dict[str, tuple[str, str, list[Any]]] = {
    "age_years": ("feature", "numerical", [35, 52, 23]),
    "housing": ("feature", "categorical", ["own", "rent", "for_free"]),
    "decision": ("prediction", "categorical", ["approve", "decline", "approve"]),
    "probability_of_default": ("prediction", "numerical", [0.05, 0.4, 0.125]),
}
ROWS = 3
PER_REQUEST = frozenset(DefaultMonitor.PRESERVED_COLUMNS)
"""Columns every monitor adds per request: time, request id, trace id."""


class Emitted(logging.Handler):
    """Counts what reaches the data logger's handlers: one record = one formatting pass."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _log_one_request(
    monitor: DefaultMonitor, before: Callable[[DefaultMonitor], None] = lambda _m: None
) -> Emitted:
    """Log COLUMNS as one request's records, as log_decisions does; return what was emitted."""
    emitted = Emitted()

    def request() -> None:
        monitor._init_logger()
        assert monitor.data_logger is not None
        monitor.data_logger.addHandler(emitted)
        before(monitor)
        monitor.start_record()
        for name, (role, kind, values) in COLUMNS.items():
            monitor.log_batch(values, name, role, kind)
        monitor.stop_record()
        monitor.data_logger.removeHandler(emitted)

    contextvars.copy_context().run(request)  # a request's own context, as a server gives it
    return emitted


def _records(log_path: Path, name: str) -> list[dict[str, Any]]:
    data = log_path / name / "data" / "data.0.log"
    return [json.loads(line) for line in data.read_text().splitlines()]


# --- canaries ----------------------------------------------------------------------------------


class _CountingDefault(DefaultMonitor):
    calls = 0

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        type(self).calls += 1
        super().log(data, name, role, data_type)


def test_bentomls_monitor_still_logs_each_value_and_formats_each_record(tmp_path: Path) -> None:
    monitor = _CountingDefault("canary", log_path=str(tmp_path))
    emitted = _log_one_request(monitor)
    assert _CountingDefault.calls == ROWS * len(COLUMNS), (
        "BentoML's DefaultMonitor.log_batch no longer handles each value on its own: measure "
        "again and revisit credit_risk/serving/workarounds/decision_monitor.py"
    )
    formatters = {type(h.formatter) for h in monitor.data_logger.handlers if h is not emitted}
    per_record = (
        "BentoML's DefaultMonitor.export_data no longer formats each record through "
        "python-json-logger: measure again and revisit "
        "credit_risk/serving/workarounds/decision_monitor.py"
    )
    assert len(emitted.records) == ROWS, per_record
    assert formatters == {JsonFormatter}, per_record


# --- JsonLinesMonitor --------------------------------------------------------------------------


def test_the_same_records_in_the_same_layout_written_at_once(tmp_path: Path) -> None:
    _log_one_request(DefaultMonitor("decisions", log_path=str(tmp_path / "bentoml")))
    ours = _log_one_request(JsonLinesMonitor("decisions", log_path=str(tmp_path / "ours")))
    assert len(ours.records) == 1, "one write per request"
    expected = _records(tmp_path / "bentoml", "decisions")
    got = _records(tmp_path / "ours", "decisions")
    assert len(got) == ROWS

    def without_request_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in PER_REQUEST} for r in rows]

    assert without_request_columns(got) == without_request_columns(expected)
    assert [list(r) for r in got] == [list(r) for r in expected], "same keys, same order"
    assert len({(r["timestamp"], r["request_id"]) for r in got}) == 1
    schema = tmp_path / "ours" / "decisions" / "schema" / "schema.0.log"
    columns = json.loads(schema.read_text())["columns"]
    assert [(c["name"], c["role"], c["type"]) for c in columns] == [
        (name, role, kind) for name, (role, kind, _) in COLUMNS.items()
    ]


def test_a_second_request_reuses_the_schema_and_appends(tmp_path: Path) -> None:
    monitor = JsonLinesMonitor("decisions", log_path=str(tmp_path))
    _log_one_request(monitor)
    _log_one_request(monitor)
    assert len(_records(tmp_path, "decisions")) == 2 * ROWS
    schema = tmp_path / "decisions" / "schema" / "schema.0.log"
    assert len(schema.read_text().splitlines()) == 1
