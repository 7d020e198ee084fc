"""Decision records as the service makes them, from the real policy and example applicants."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Final

import numpy as np

from credit_risk.decision_store import DecisionRecord, new_records
from credit_risk.decision_store.records import utc_text
from credit_risk.decisions import DecisionRule
from credit_risk.policy import SCALING
from credit_risk.recourse import APPROVED, FOUND, NONE, RecourseColumns
from credit_risk.schema import FEATURES, Applicant, example_applicant


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


NOTICE_RULE: Final = DecisionRule(threshold=0.17, scaling=SCALING, model_version="credit_risk:test")
"""The real decision function at a threshold of 0.17 (what training picks is near it)."""


def decided_record(
    probability: float,
    excess_logit: dict[str, float],
    recourse: tuple[float, int] | None = None,
    application_id: str | None = "loan-2026-000123",
    when: datetime | None = None,
) -> DecisionRecord:
    """One record as the service makes it from model output: the real policy scores, bands,
    ranks the reasons (`excess_logit` per field) and, for a decline, carries the recourse
    (an amount and a term, or none found)."""
    excess = np.zeros((1, len(FEATURES)))
    for name, value in excess_logit.items():
        excess[0, FEATURES.index(name)] = value
    p = np.array([probability])
    state = APPROVED if not NOTICE_RULE.declines(p)[0] else FOUND if recourse else NONE
    amount, term = recourse or (0.0, 0)
    columns = RecourseColumns(
        np.array([state]), np.zeros(1, dtype=np.intp), np.array([amount]), np.array([term])
    )
    [record] = new_records(
        [Applicant.model_validate(example_applicant())],
        NOTICE_RULE.records(p, excess, columns),
        None,
        application_ids=[application_id],
        policy_version=NOTICE_RULE.policy_version,
        decided_at=utc_text(when) if when else None,
    )
    return record
