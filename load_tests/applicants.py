"""Realistic request bodies: applicants drawn from the training data, and known-bad payloads.

A load test that repeats one fixed payload measures a cache, not a service. Rows of the shipped
data set are resampled with replacement (the empirical training distribution) and written as the
JSON the API accepts: the schema is strict, so integer fields must be JSON integers and amounts
JSON numbers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from credit_risk.policy import MAX_BATCH_APPLICANTS as MAX_BATCH
from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import Applicant, example_applicant
from credit_risk.training.data import DEFAULT_DATA_PATH, applicant_records, load_dataset


@cache
def training_applicants(path: Path = DEFAULT_DATA_PATH) -> tuple[dict[str, Any], ...]:
    """Every row of the data set as an API body, each validated through the strict schema."""
    rows = applicant_records(load_dataset(path).X)
    for body in rows:
        Applicant.model_validate_json(json.dumps(body))  # strict, as the API parses it
    return tuple(rows)


def sample_applicants(n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """`n` applicants resampled with replacement from the training rows."""
    rng = random.Random(seed)
    return [dict(row) for row in rng.choices(training_applicants(), k=n)]  # callers may edit


@dataclass(frozen=True)
class BadRequest:
    """A payload the service must refuse with `status`, naming `field` when one is at fault."""

    name: str
    path: str
    body: bytes
    status: int
    field: str | None


def bad_requests() -> list[BadRequest]:
    """The bad-input mix: each kind of mistake a client makes, with the answer it must get."""
    good = example_applicant()
    missing = {k: v for k, v in good.items() if k != "age_years"}
    row = json.dumps(good).encode()
    oversize = b"[" + b",".join([row] * (MAX_BODY_BYTES // len(row) + 1)) + b"]"
    changed = [  # name, what changes, the field the answer must name
        ("unknown category", {"purpose": "yacht"}, "purpose"),
        ("string for int", {"duration_months": "24"}, "duration_months"),
        ("float for int", {"age_years": 35.5}, "age_years"),
        ("out of range", {"installment_rate": 9}, "installment_rate"),
        ("negative amount", {"credit_amount": -1.0}, "credit_amount"),
        ("extra field", {"foreign_worker": "yes"}, "foreign_worker"),
    ]
    batch = json.dumps([good] * (MAX_BATCH + 1)).encode()
    return [
        BadRequest("missing field", "/classify", json.dumps(missing).encode(), 400, "age_years"),
        *(BadRequest(n, "/classify", json.dumps(good | c).encode(), 400, f) for n, c, f in changed),
        BadRequest("malformed JSON", "/classify", b'{"checking_account": ', 400, None),
        BadRequest("empty batch", "/classify_batch", b"[]", 400, None),
        BadRequest("batch over limit", "/classify_batch", batch, 400, None),
        BadRequest("body over 1 MiB", "/classify_batch", oversize, 413, None),
    ]


def refusal_problem(bad: BadRequest, status: int, body: bytes) -> str | None:
    """What is wrong with the service's answer to a bad request, or None if it is right."""
    if status != bad.status:
        return f"{bad.name}: expected {bad.status}, got {status}: {body[:200]!r}"
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return f"{bad.name}: {status} without a JSON body: {body[:200]!r}"
    if not isinstance(payload, dict) or "error" not in payload:
        return f"{bad.name}: {status} body has no 'error': {body[:200]!r}"
    if bad.field is not None and bad.field not in str(payload["error"]):
        return f"{bad.name}: the error does not name {bad.field!r}: {body[:300]!r}"
    return None


def write_bodies(path: Path, bodies: list[Any]) -> Path:
    """One compact JSON body per line: the file the wrk script rotates through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies), "utf-8")
    return path
