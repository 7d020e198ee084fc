"""A request body's applicants, or a 400 that costs less than deciding them.

Validating a 1,000-row batch with every field wrong in full built 18,000 errors: 16 ms to
validate and 20-76 ms to list them, against 4 ms for a valid batch, so clients posting such
batches back to back held the event loop for everyone. Here a batch is validated fail-fast:
pydantic stops at its first invalid row, and the 400 lists that row's errors (at most
`MAX_DETAIL`) and counts them. A row can hold thousands of unknown keys, each one more error,
more than are worth listing: then the row is found in the parsed body and validated again with
its fields and its first `MAX_DETAIL` unknown keys only; pydantic still finds every one, so such a
row costs about what deciding a full batch does. Measured in docs/reliability.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Final

from pydantic import FailFast, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, from_json, to_json

from credit_risk.schema import Application, ApplicationBatch
from credit_risk.serving.workarounds.json_body import DUPLICATE_KEY, json_problem
from credit_risk.serving.workarounds.validation_errors import body_location, validation_message

SINGLE: Final = TypeAdapter(Application)
BATCH: Final = TypeAdapter(Annotated[ApplicationBatch, FailFast()])
"""Fail-fast: the first invalid row stops validation (and comes before a batch's length)."""
FIELDS: Final = frozenset(Application.model_fields)
MAX_DETAIL: Final = 50
"""Errors listed in a 400's `detail`; `error_count` counts them all."""
STOPPED: Final = "validation stops at the first invalid row"
REPEATED_KEY_SEARCH_BYTES: Final = 16 * 1024
"""Invalid bodies up to this size are searched for a repeated key (at most ~1 ms: the search
parses in Python); one applicant is under 1 KB. Larger ones, batches of dozens of rows and more,
get their first invalid row's errors, for the values pydantic read (the last ones)."""
SPACED_KEY: Final = re.compile(rb'"\s+:')
"""A key with white space before its colon (counted otherwise: JSON allows it, we rarely see it)."""


class InvalidBodyError(ValueError):
    """A body that holds no valid applicant or batch of them; `answer` is the 400's body."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer["error"])
        self.answer = answer


def applicants(body: bytes, *, single: bool) -> list[Application]:
    """The applicants in `body` (one, or a batch), validated once; InvalidBodyError with the
    first invalid row's errors otherwise, however many rows are wrong."""
    try:
        found = [SINGLE.validate_json(body)] if single else BATCH.validate_json(body)
    except ValidationError as exc:
        raise InvalidBodyError(_invalid(body, exc, single=single)) from None
    duplicate = repeated_key(body, found)
    if duplicate is not None:
        raise InvalidBodyError(duplicate)
    return found


def repeated_key(body: bytes, applicants: Sequence[Application]) -> dict[str, Any] | None:
    """A 400's body when a JSON object of `body` names a key twice (the validator keeps the
    last silently), else None. In a body without escapes or spaced keys every `":` closes a
    key, so one count tells whether each applicant named each of its fields once; only other
    bodies are parsed again to find out."""
    keys = sum(len(a.model_fields_set) for a in applicants)  # extra keys are refused
    if b"\\" not in body and body.count(b'":') == keys and not SPACED_KEY.search(body):
        return None
    return _repeated(body)


def _repeated(body: bytes) -> dict[str, Any] | None:
    problem = json_problem(body)
    if problem is None or problem[0] != DUPLICATE_KEY:
        return None
    message = problem[1]
    detail = [{"type": DUPLICATE_KEY, "loc": [], "msg": message}]
    return {"error": f"invalid input: body: {message}", "detail": detail}


def _invalid(body: bytes, exc: ValidationError, *, single: bool) -> dict[str, Any]:
    """The 400's body for a `body` that failed validation (`exc`, fail-fast): in a small body a
    repeated key is named first, as it may be why a value is wrong."""
    duplicate = _repeated(body) if len(body) <= REPEATED_KEY_SEARCH_BYTES else None
    if duplicate is not None:
        return duplicate
    count = exc.error_count()
    detail = _listed(exc) if count <= MAX_DETAIL else _first_listed(body, exc, single=single)
    message = validation_message(detail, count)
    answer: dict[str, Any] = {"error": message, "detail": detail, "error_count": count}
    if not single and detail and detail[0]["loc"] and isinstance(detail[0]["loc"][0], int):
        answer["error"] += f" ({STOPPED})"
    return answer


def _listed(exc: ValidationError, row: int | None = None) -> list[dict[str, Any]]:
    prefix = [] if row is None else [row]
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return [_entry(e, prefix) for e in errors]


def _entry(error: ErrorDetails, prefix: list[Any]) -> dict[str, Any]:
    loc = [*prefix, *body_location(list(error["loc"]))]
    return {"type": error["type"], "loc": loc, "msg": error["msg"]}


def _first_listed(body: bytes, exc: ValidationError, *, single: bool) -> list[dict[str, Any]]:
    """The first `MAX_DETAIL` errors of the first invalid row when it has more: only unknown
    keys make more than a row's fields (so the rows before it have no more keys than those),
    and they come after the field errors, in the body's order."""
    parsed = from_json(body)  # pydantic parsed it already: the errors were in a row
    rows = [parsed] if single else parsed
    index = next((i for i, row in enumerate(rows) if len(row) > len(FIELDS)), None)
    if index is None:  # not reached (the docstring says why); listing them all is still right
        return _listed(exc)[:MAX_DETAIL]
    row = rows[index]
    unknown = [key for key in row if key not in FIELDS][:MAX_DETAIL]
    kept = {key: row[key] for key in [*(f for f in Application.model_fields if f in row), *unknown]}
    try:  # as JSON again: pydantic words some errors differently for Python objects
        SINGLE.validate_json(to_json(kept, inf_nan_mode="constants"))
    except ValidationError as trimmed:
        return _listed(trimmed, None if single else index)[:MAX_DETAIL]
    return []  # not reached: the kept unknown keys are refused
