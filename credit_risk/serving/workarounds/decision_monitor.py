"""BentoML's default decision-log monitor, without its per-value and per-record costs.

Upstream (BentoML 1.4.40, checked): `DefaultMonitor` checks and stores each logged value on its
own and formats each record through the logging machinery and python-json-logger: ~0.2 ms per
decision under load (py-spy), more than everything else a decision costs. `JsonLinesMonitor`
writes the same files in the same JSON layout, a whole request's records in one call. The
canary in tests/serving/workarounds/test_decision_monitor.py fails once upstream's
`log_batch` or `export_data` change; then measure again and delete this module if they no
longer cost more than the decision.

BentoML also takes a relative `log_path` (its default is `monitoring`) from the working
directory, so whoever started a server in the source tree wrote decisions into it, tests
included. Here a relative path is taken from the BentoML home instead (the same canary checks
upstream's reading of the path).
"""

from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Iterable
from typing import Any, Final, cast

from bentoml._internal.context import trace_context
from bentoml._internal.monitoring.base import MON_COLUMN_VAR, MON_DATAS_VAR
from bentoml._internal.monitoring.default import DefaultMonitor
from pydantic_core import to_json

from credit_risk.serving.decision_log import resolve_log_path

MONITOR_TYPE: Final = "credit_risk.serving.workarounds.decision_monitor.JsonLinesMonitor"
"""Import path for BentoML's `monitoring.type` setting."""


class JsonLinesMonitor(DefaultMonitor):
    """BentoML's default monitor without its per-value and per-record costs.

    The default logs each value with its own checks and formats each record through the
    logging machinery and python-json-logger: ~0.2 ms per decision, more than everything else a
    decision costs. Here a column is appended in one call and a request's records go to the same
    rotating file handler as one block of lines, in the same JSON layout.
    """

    def __init__(self, name: str, log_path: str, **options: Any) -> None:
        super().__init__(name, str(resolve_log_path(log_path)), **options)

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        """Append a whole column of the current record set."""
        if self.columns_schema is None:
            columns = MON_COLUMN_VAR.get()
            assert columns is not None
            columns.setdefault(name, {"name": name, "role": role, "type": data_type})
        datas = MON_DATAS_VAR.get()
        assert datas is not None
        datas[name].extend(data_batch)

    def _init_logger(self) -> None:
        super()._init_logger()
        if self.log_config_file is None:  # BentoML's default config: lines are JSON already
            for handler in self._data_logger().handlers:
                handler.setFormatter(logging.Formatter("%(message)s"))

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        """Write every record of this request as one block of JSON lines."""
        if self.log_config_file is not None:  # a custom logging config formats its own way
            super().export_data(datas)
            return
        extra = {
            self.COLUMN_TIME: datetime.datetime.now().isoformat(),
            self.COLUMN_RID: str(trace_context.request_id),
            self.COLUMN_TID: str(trace_context.trace_id),
        }
        names = list(datas)
        rows = [dict(zip(names, row, strict=True)) for row in zip(*datas.values(), strict=True)]
        for column in datas.values():
            column.clear()
        if rows:
            for row in rows:
                row.update(extra)
            # one record, one write: the handler still rotates daily and flushes
            self._data_logger().info(b"\n".join(map(to_json, rows)).decode())

    def _data_logger(self) -> logging.Logger:
        if self.data_logger is None:
            self._init_logger()
        return cast(logging.Logger, self.data_logger)
