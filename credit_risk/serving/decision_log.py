"""The decision log: one record per decision, for audit and for joining with outcomes later.

Written through `bentoml.monitor`, so BentoML's monitoring config decides where records go: by
default JSON lines under `$BENTOML_HOME/monitoring/credit_risk_decisions/data/`, one file per
worker rotated daily, beside the model store that made the decisions (so a test's temporary
store never shares a log with `make serve`). `monitoring.options.log_path` in BENTOML_CONFIG
moves it; `monitoring.type: otlp` sends the records to an OpenTelemetry collector instead.
In Kubernetes every pod logs under its own directory of one shared volume
(`log_path: .../${POD_NAME}`), and `read_decision_records` reads them all back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import bentoml

from credit_risk.model_store import store_home
from credit_risk.schema import CATEGORIES, FEATURES, Applicant

DECISION_LOG: Final = "credit_risk_decisions"
"""Monitor name: the folder under the monitoring log path."""
CHALLENGER_COLUMN: Final = "challenger"
"""The challenger's shadow record: model_version, probability_of_default, score, risk_band,
decision, threshold, reason_codes (codes, comma-separated); null when an error lost it."""


BENTOML_DEFAULT_LOG_PATH: Final = "monitoring"
"""BentoML's default `monitoring.options.log_path`: relative, so relative to the model store."""


def resolve_log_path(configured: str) -> Path:
    """A configured log path; a relative one is taken from the BentoML home, not the working
    directory (BentoML's own reading), so every store keeps its own decision log."""
    path = Path(configured)
    return path if path.is_absolute() else store_home() / path


def default_log_path() -> Path:
    """Where the decision log goes unless BentoML's config says otherwise."""
    return resolve_log_path(BENTOML_DEFAULT_LOG_PATH)


_OUTPUTS: Final = (
    ("decision_id", "categorical"),
    ("model_version", "categorical"),
    ("probability_of_default", "numerical"),
    ("score", "numerical"),
    ("risk_band", "categorical"),
    ("decision", "categorical"),
    ("threshold", "numerical"),
)


def log_decisions(
    applicants: Sequence[Applicant],
    decisions: Sequence[dict[str, Any]],
    challenger: Sequence[dict[str, Any] | None] | None = None,
) -> None:
    """Record each applicant's features with its decision (`Decision` layout as a dict), and
    the challenger's shadow record under its own key when one is scored (null if lost)."""
    assert len(applicants) == len(decisions), "one decision per applicant"
    with bentoml.monitor(DECISION_LOG) as mon:
        for name in FEATURES:
            kind = "categorical" if name in CATEGORIES else "numerical"
            mon.log_batch([getattr(a, name) for a in applicants], name, "feature", kind)
        for name, kind in _OUTPUTS:
            mon.log_batch([d[name] for d in decisions], name, "prediction", kind)
        mon.log_batch(
            [",".join(r["code"] for r in d["reason_codes"]) for d in decisions],
            "reason_codes",
            "prediction",
            "categorical",
        )
        mon.log_batch([d["recourse"] for d in decisions], "recourse", "prediction", "categorical")
        if challenger is not None:
            assert len(challenger) == len(decisions), "one challenger record per decision"
            mon.log_batch(challenger, CHALLENGER_COLUMN, "prediction", "categorical")


def decision_log_files(root: Path) -> list[Path]:
    """Every decision-log file under `root`: one server's log path, or a shared directory
    holding one log path per pod (`<root>/<pod>/`), rotated files included."""
    pattern = f"{DECISION_LOG}/data/data.*.log*"
    return sorted([*root.glob(pattern), *root.glob(f"*/{pattern}")])


def read_decision_records(root: Path) -> Iterator[dict[str, Any]]:
    """The decision records of every server that logged under `root`, file by file."""
    for path in decision_log_files(root):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
