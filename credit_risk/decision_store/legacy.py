"""The JSON-lines decision logs written before the store (BentoML's monitor), imported into it.

Layout of those logs: one server's monitoring log path holds
`credit_risk_decisions/data/data.<worker>.log[.<date>]`; a shared volume holds one such log path
per pod. Each line is one decision: the applicant's fields, `decision_id`, `model_version`,
`probability_of_default`, `score`, `risk_band`, `decision`, `threshold`, `reason_codes` (codes,
comma-separated), `challenger` (when one was scored) and BentoML's `timestamp` (naive, read as
UTC: the pods ran in UTC), `request_id`, `trace_id`. Those logs kept neither the reasons' points
nor a policy version: the imported records say so (`points` null, policy `unrecorded`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import to_json

from credit_risk.decision_store.chain import ChainWriter, process_writer_id
from credit_risk.decision_store.errors import StoreError
from credit_risk.decision_store.records import DecisionRecord, applicant_json, utc_text
from credit_risk.decision_store.store import DecisionStore
from credit_risk.policy import REASONS
from credit_risk.schema import FEATURES, Applicant

LOG_NAME: Final = "credit_risk_decisions"
"""The monitor's folder under a monitoring log path."""
UNRECORDED_POLICY: Final = "unrecorded"
"""The policy version of an imported record: the old logs did not keep one."""
BATCH: Final = 1000
"""Records per transaction while importing."""

_FEATURE_OF: Final = {code: feature for feature, (code, _text) in REASONS.items()}


@dataclass
class ImportSummary:
    """What an import read and stored."""

    files: int = 0
    read: int = 0
    imported: int = 0
    already_stored: int = 0


def log_files(path: Path) -> list[Path]:
    """The log files at `path`: one file, one server's log path, a shared directory with a log
    path per pod, or any folder of `*.log*` files."""
    if path.is_file():
        return [path]
    pattern = f"{LOG_NAME}/data/data.*.log*"
    found = sorted([*path.glob(pattern), *path.glob(f"*/{pattern}")])
    return found or sorted(p for p in path.rglob("*.log*") if p.is_file())


def read_logs(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for every line of every log file at `path`; a line that is not a
    decision record is a `StoreError` naming its file and line."""
    files = log_files(path) if path.exists() else []
    if not files:
        msg = f"{path}: no decision log files (*.log) found"
        raise StoreError(msg)
    for file in files:
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    where = f"{file} line {number}"
                    try:
                        yield where, json.loads(line)
                    except ValueError:
                        msg = f"{where}: not a JSON decision record"
                        raise StoreError(msg) from None


def to_record(raw: dict[str, Any], where: str) -> DecisionRecord:
    """One logged decision as a store record (not yet chained)."""
    try:
        applicant = Applicant.model_validate({name: raw[name] for name in FEATURES})
        codes = [c for c in str(raw.get("reason_codes") or "").split(",") if c]
        reasons = [{"code": c, "feature": _FEATURE_OF.get(c), "points": None} for c in codes]
        return DecisionRecord(
            decision_id=str(raw["decision_id"]),
            application_id=raw.get("application_id"),
            decided_at=_logged_time(raw.get("timestamp")),
            model_version=str(raw["model_version"]),
            policy_version=UNRECORDED_POLICY,
            inputs=applicant_json(applicant),
            probability_of_default=float(raw["probability_of_default"]),
            score=int(raw["score"]),
            risk_band=str(raw["risk_band"]),
            decision=str(raw["decision"]),
            threshold=float(raw["threshold"]),
            reasons=json.dumps(reasons, separators=(",", ":")),
            challenger=to_json(raw["challenger"]).decode() if "challenger" in raw else None,
        )
    except KeyError as exc:
        msg = f"{where}: not a decision record (no {exc.args[0]!r})"
        raise StoreError(msg) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        msg = f"{where}: applicant field {field}: {first['msg']}"
        raise StoreError(msg) from None
    except (TypeError, ValueError) as exc:
        msg = f"{where}: not a decision record ({exc})"
        raise StoreError(msg) from None


def _logged_time(value: Any) -> str:
    if not value:
        msg = "no timestamp"
        raise ValueError(msg)
    moment = datetime.fromisoformat(str(value))
    return utc_text(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def import_logs(store: DecisionStore, path: Path) -> ImportSummary:
    """Validate every line at `path`, then store the decisions not stored yet, chained under
    one import writer (a re-run imports nothing twice)."""
    summary = ImportSummary(files=len(log_files(path)) if path.exists() else 0)
    records: dict[str, DecisionRecord] = {}
    for where, raw in read_logs(path):
        summary.read += 1
        record = to_record(raw, where)
        records.setdefault(record.decision_id, record)
    ordered = sorted(records.values(), key=lambda r: (r.decided_at, r.decision_id))
    writer = ChainWriter(store, process_writer_id("import"))
    for start in range(0, len(ordered), BATCH):
        chunk = ordered[start : start + BATCH]
        stored = store.known_ids([r.decision_id for r in chunk])
        new = [r for r in chunk if r.decision_id not in stored]
        summary.already_stored += len(chunk) - len(new)
        if new:
            writer.append(new)
            summary.imported += len(new)
    summary.already_stored += summary.read - len(records)
    return summary
