"""Decision records as the service makes them, from the real policy and example applicants."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from credit_risk.decision_store import DecisionRecord, new_records
from credit_risk.decision_store.records import utc_text
from credit_risk.schema import Applicant, example_applicant


def decision(p: float = 0.3, ref_code: str = "RC02") -> dict[str, Any]:
    """One decision in the `Decision` layout, with a fresh id."""
    declined = p > 0.17
    return {
        "probability_of_default": p,
        "decision": "decline" if declined else "approve",
        "threshold": 0.17,
        "score": 500,
        "risk_band": "D" if declined else "B",
        "reason_codes": (
            [{"code": ref_code, "feature": "duration_months", "description": "x", "points": -3.5}]
            if declined
            else []
        ),
        "model_version": "credit_risk:test",
        "decision_id": os.urandom(16).hex(),
    }


def make_records(
    n: int,
    application_id: str | None = None,
    when: datetime | None = None,
    challenger: bool = False,
    officer_id: str | None = None,
) -> list[DecisionRecord]:
    """`n` records decided at `when` (default now), all for `application_id`, asked for by
    `officer_id`."""
    applicants = [Applicant.model_validate(example_applicant())] * n
    decisions = [decision(0.05 + 0.9 * i / max(n, 1)) for i in range(n)]
    shadow = [{"model_version": "credit_risk:other", "decision": "approve"}] * n
    return new_records(
        applicants,
        decisions,
        shadow if challenger else None,
        application_ids=[application_id] * n,
        policy_version="policy:test",
        decided_at=utc_text(when) if when else None,
        officer_ids=[officer_id] * n,
    )
