"""The decision log: one record per decision, for audit and for joining with outcomes later.

Written through `bentoml.monitor`, so BentoML's monitoring config decides where records go:
JSON lines under `monitoring/credit_risk_decisions/data/` by default (one file per API worker,
rotated daily), or an OTLP collector with `monitoring.type: otlp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import bentoml

from credit_risk.schema import CATEGORIES, FEATURES, Applicant, Decision

DECISION_LOG: Final = "credit_risk_decisions"
"""Monitor name: the folder under the monitoring log path."""

_OUTPUTS: Final = (
    ("decision_id", "categorical"),
    ("model_version", "categorical"),
    ("probability_of_default", "numerical"),
    ("score", "numerical"),
    ("risk_band", "categorical"),
    ("decision", "categorical"),
    ("threshold", "numerical"),
)


def log_decisions(applicants: Sequence[Applicant], decisions: Sequence[Decision]) -> None:
    """Record each applicant's features with its decision, one record per applicant."""
    assert len(applicants) == len(decisions), "one decision per applicant"
    with bentoml.monitor(DECISION_LOG) as mon:
        for name in FEATURES:
            kind = "categorical" if name in CATEGORIES else "numerical"
            mon.log_batch([getattr(a, name) for a in applicants], name, "feature", kind)
        for name, kind in _OUTPUTS:
            mon.log_batch([getattr(d, name) for d in decisions], name, "prediction", kind)
        mon.log_batch(
            [",".join(r.code for r in d.reason_codes) for d in decisions],
            "reason_codes",
            "prediction",
            "categorical",
        )
