"""One decision record: what was decided, on which inputs, by which model and policy, and why.

The columns are the store's one schema (both backends). Structured values (the applicant's
inputs, the reasons, the challenger's shadow decision) are kept as the exact JSON text that was
hashed, so a record verifies byte for byte on either backend.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from pydantic import TypeAdapter
from pydantic_core import to_json

from credit_risk.policy import REASONS
from credit_risk.schema import Applicant

GENESIS_HASH: Final = "0" * 64
"""The previous hash of a writer's first record."""

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
"""`decided_at`: UTC, fixed width, so text order is time order on both backends."""

REASON_TEXT: Final = {code: (feature, text) for feature, (code, text) in REASONS.items()}
"""Reason code -> (field, the reason in words): the policy's catalogue (codes never change
meaning, so a record keeps only codes and points)."""


def utc_text(moment: datetime) -> str:
    """A moment as `decided_at` text (UTC, microseconds, `Z`)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def now_text() -> str:
    """The current time as `decided_at` text."""
    return utc_text(datetime.now(UTC))


class DecisionRecord(NamedTuple):
    """A stored decision. The chain fields are set by the writer when it commits.

    A named tuple, so a record is its own row in `COLUMNS` order: the serving path builds two
    of them per decision, and a frozen dataclass's `__init__` cost more than hashing one.
    """

    decision_id: str
    application_id: str | None
    decided_at: str
    model_version: str
    policy_version: str
    inputs: str
    """The applicant's fields, a JSON object in schema order."""
    probability_of_default: float
    score: int
    risk_band: str
    decision: str
    threshold: float
    reasons: str
    """JSON list of `{"code", "feature", "points"}`, the costliest first; `[]` on approval."""
    challenger: str | None
    """The challenger's shadow decision as JSON; `null` (the JSON text) when an error lost it,
    SQL NULL when no challenger was scored."""
    recourse: str | None = None
    """The answer's recourse as JSON (`Decision.recourse`); SQL NULL on approval."""
    officer_id: str | None = None
    """Who asked for the decision (`Application.officer_id`); SQL NULL when not given. Hashed
    only when given, so records from before the column verify as they were written."""
    writer_id: str = ""
    seq: int = 0
    prev_hash: str = ""
    record_hash: str = ""

    def content_hash(self, prev_hash: str) -> str:
        """SHA-256 of the previous hash and every content column (not `seq`: the chain itself
        is the order, so a moved record shows up as out of order, not as edited)."""
        return hash_content(prev_hash, _hashed(self), self.writer_id)

    def chained(self, writer_id: str, seq: int, prev_hash: str) -> DecisionRecord:
        """This record as the writer's `seq`-th, after the record hashed `prev_hash`."""
        digest = hash_content(prev_hash, _hashed(self), writer_id)
        return DecisionRecord._make((*self[:_CHAIN], writer_id, seq, prev_hash, digest))

    def as_row(self) -> tuple[Any, ...]:
        """The column values, in `COLUMNS` order."""
        return tuple(self)

    def view(self) -> dict[str, Any]:
        """The record as retrieval shows it: inputs, outputs, reasons in words, versions."""
        reasons = [
            {**r, "description": REASON_TEXT.get(r["code"], ("", "unknown reason code"))[1]}
            for r in json.loads(self.reasons)
        ]
        return {
            "decision_id": self.decision_id,
            "application_id": self.application_id,
            "officer_id": self.officer_id,
            "decided_at": self.decided_at,
            "model_version": self.model_version,
            "policy_version": self.policy_version,
            "inputs": json.loads(self.inputs),
            "outputs": {
                "probability_of_default": self.probability_of_default,
                "score": self.score,
                "risk_band": self.risk_band,
                "decision": self.decision,
                "threshold": self.threshold,
            },
            "reasons": reasons,
            "challenger": json.loads(self.challenger) if self.challenger is not None else None,
            "recourse": json.loads(self.recourse) if self.recourse is not None else None,
            "integrity": {
                "writer_id": self.writer_id,
                "seq": self.seq,
                "prev_hash": self.prev_hash,
                "record_hash": self.record_hash,
            },
        }


COLUMNS: Final = DecisionRecord._fields
"""Column order of the `decisions` table."""
_CHAIN: Final = COLUMNS.index("writer_id")
CONTENT: Final = COLUMNS[:_CHAIN]
"""The columns a record's hash covers, with the writer's id after them."""
OPTIONAL_LAST: Final = "officer_id"
"""The last content column, hashed only when set (it came after records were already stored)."""
assert CONTENT[-1] == OPTIONAL_LAST


def _hashed(record: DecisionRecord) -> tuple[Any, ...]:
    """The content a record's hash covers: every content column, the officer only if given."""
    return record[:_CHAIN] if record.officer_id is not None else record[: _CHAIN - 1]


def hash_content(prev_hash: str, content: tuple[Any, ...], writer_id: str) -> str:
    """SHA-256 of the compact JSON list [previous hash, *content, writer id]."""
    return hashlib.sha256(to_json([prev_hash, *content, writer_id])).hexdigest()


def _reasons_json(reason_codes: Sequence[dict[str, Any]]) -> str:
    if not reason_codes:  # every approval
        return "[]"
    return to_json(
        [{"code": r["code"], "feature": r["feature"], "points": r["points"]} for r in reason_codes]
    ).decode()


def new_records(
    applicants: Sequence[Applicant],
    decisions: Sequence[dict[str, Any]],
    challenger: Sequence[dict[str, Any] | None] | None,
    *,
    application_ids: Sequence[str | None],
    policy_version: str,
    decided_at: str | None = None,
    officer_ids: Sequence[str | None] | None = None,
) -> list[DecisionRecord]:
    """One record per decision (the `Decision` layout as a dict), not yet chained."""
    assert len(applicants) == len(decisions) == len(application_ids), "one record per decision"
    officers = officer_ids if officer_ids is not None else [None] * len(decisions)
    assert len(officers) == len(decisions), "one officer (or None) per decision"
    when = decided_at or now_text()
    scored = challenger is not None
    shadows = challenger if challenger is not None else [None] * len(decisions)
    assert len(shadows) == len(decisions), "one challenger record per decision"
    return [  # positional, in `COLUMNS` order (the serving path: 1,000 per batch)
        DecisionRecord(
            d["decision_id"],
            ref,
            when,
            d["model_version"],
            policy_version,
            applicant_json(a),
            float(d["probability_of_default"]),
            int(d["score"]),
            d["risk_band"],
            d["decision"],
            float(d["threshold"]),
            _reasons_json(d["reason_codes"]),
            to_json(shadow).decode() if scored else None,
            to_json(d["recourse"]).decode() if d.get("recourse") else None,
            officer,
        )
        for a, d, shadow, ref, officer in zip(
            applicants, decisions, shadows, application_ids, officers, strict=True
        )
    ]


_INPUTS: Final = TypeAdapter(Applicant)
"""Serialises an `Application` as its `Applicant` fields only: the stored inputs."""


def applicant_json(applicant: Applicant) -> str:
    """The applicant's fields as stored: a JSON object in schema order (no application id)."""
    return _INPUTS.dump_json(applicant).decode()
