"""One summary record per portfolio run, appended to a JSON-lines audit log.

Per-row decisions live in the job's output file; the online decision log is for the API's
decisions only. The log sits in the BentoML home beside the models it names, unless
`$CREDIT_RISK_PORTFOLIO_AUDIT_LOG` or `--audit-log` says otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

AUDIT_ENV: Final = "CREDIT_RISK_PORTFOLIO_AUDIT_LOG"
"""Environment variable naming the audit log file."""


def default_audit_log() -> Path:
    """`$CREDIT_RISK_PORTFOLIO_AUDIT_LOG`, else `<BentoML home>/portfolio/runs.jsonl`."""
    configured = os.environ.get(AUDIT_ENV)
    if configured:
        return Path(configured)
    from credit_risk.model_store import store_home  # noqa: PLC0415 (imports bentoml)

    return store_home() / "portfolio" / "runs.jsonl"


def append_run(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash later cannot lose the record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_runs(path: Path) -> list[dict[str, Any]]:
    """Every record in the log, oldest first (for reports and tests)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
