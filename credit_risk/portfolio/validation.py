"""The applicant contract checked column by column over an Arrow batch.

Field names, categories, whole-number fields and bounds are read from `credit_risk.schema`
(the pydantic `Applicant` the API validates with), never restated here. A row that breaks a
rule is quarantined with the field and the reason; a column whose Arrow type can never hold a
valid value (text where a number belongs) refuses the whole input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import annotated_types
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from credit_risk.arrays import FloatArray
from credit_risk.portfolio import RefusedInputError
from credit_risk.schema import APPLICATION_ID_PATTERN, CATEGORIES, FEATURES, Applicant

BoolArray = npt.NDArray[np.bool_]

APPLICATION_ID: Final = "application_id"
"""The optional column with the lender's own reference, checked as /classify checks it."""

NUMBER_PATTERN: Final = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
"""A decimal number as text (CSV input): anything else in a numeric field is quarantined."""


@dataclass(frozen=True)
class FieldRule:
    """What the schema allows in one applicant field."""

    name: str
    categories: tuple[str, ...] | None = None
    whole: bool = False
    bounds: tuple[tuple[str, float], ...] = ()
    """(operator, limit) pairs, operator one of >=, >, <=, <."""


_OPERATORS: Final = {
    annotated_types.Ge: (">=", "ge"),
    annotated_types.Gt: (">", "gt"),
    annotated_types.Le: ("<=", "le"),
    annotated_types.Lt: ("<", "lt"),
}


def _rule(name: str) -> FieldRule:
    info = Applicant.model_fields[name]
    if name in CATEGORIES:
        return FieldRule(name, categories=CATEGORIES[name])
    bounds = []
    for meta in info.metadata:
        for kind, (op, attr) in _OPERATORS.items():
            if isinstance(meta, kind):
                bounds.append((op, float(getattr(meta, attr))))
    return FieldRule(name, whole=info.annotation is int, bounds=tuple(bounds))


RULES: Final[tuple[FieldRule, ...]] = tuple(_rule(name) for name in FEATURES)
"""One rule per applicant field, in schema (code array) order."""


@dataclass
class Problems:
    """Rule breaks in one batch: positions in the batch, field, reason and offending value."""

    positions: list[npt.NDArray[np.intp]] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    values: list[pa.Array] = field(default_factory=list)

    def add(self, mask: BoolArray, name: str, reason: str, column: pa.Array) -> None:
        """Record `reason` for every row where `mask` is set."""
        where = np.flatnonzero(mask)
        if len(where):
            self.positions.append(where)
            self.fields.append(name)
            self.reasons.append(reason)
            self.values.append(pc.cast(column.take(pa.array(where)), pa.string()))


@dataclass(frozen=True)
class Checked:
    """A validated batch: each field as float64 codes, and which rows broke a rule."""

    columns: list[FloatArray]
    bad: BoolArray
    problems: Problems


def check_types(schema: pa.Schema, where: str) -> None:
    """Refuse a missing field or a column whose type can never satisfy its rule."""
    missing = [name for name in FEATURES if name not in schema.names]
    if missing:
        msg = f"{where}: missing column(s) {', '.join(map(repr, missing))}"
        raise RefusedInputError(msg)
    for rule in RULES:
        kind = schema.field(rule.name).type
        if not _type_fits(rule, kind):
            wanted = "text" if rule.categories else "numbers"
            msg = f"{where}: column {rule.name!r} has type {kind}, expected {wanted}"
            raise RefusedInputError(msg)


def _type_fits(rule: FieldRule, kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if pa.types.is_null(kind) or text:
        return True  # all missing, or text: CSV numbers are parsed (and checked) per value
    return rule.categories is None and (pa.types.is_integer(kind) or pa.types.is_floating(kind))


def validate(batch: pa.RecordBatch) -> Checked:
    """Every rule over every row of the batch, vectorised per column."""
    problems = Problems()
    bad = np.zeros(batch.num_rows, dtype=bool)
    columns = []
    for rule in RULES:
        column = batch.column(rule.name)
        if pa.types.is_dictionary(column.type) and not rule.categories:
            column = column.dictionary_decode()
        check = _check_category if rule.categories else _check_number
        values, broken = check(rule, column, problems)
        columns.append(values)
        bad |= broken
    if APPLICATION_ID in batch.schema.names:
        bad |= _check_reference(batch.column(APPLICATION_ID), problems)
    return Checked(columns=columns, bad=bad, problems=problems)


def _check_reference(column: pa.Array, problems: Problems) -> BoolArray:
    """A reference is optional (null passes); one given must match the API's pattern."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    text = pc.cast(column, pa.string())
    matches = pc.match_substring_regex(text, APPLICATION_ID_PATTERN)
    broken = np.asarray(pc.fill_null(pc.invert(matches), False).to_numpy(zero_copy_only=False))
    problems.add(
        broken, APPLICATION_ID, "not 1 to 64 characters of letters, digits and . _ : -", column
    )
    return broken


def _missing(column: pa.Array) -> BoolArray:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _check_category(
    rule: FieldRule, column: pa.Array, problems: Problems
) -> tuple[FloatArray, BoolArray]:
    assert rule.categories is not None
    missing = _missing(column)
    problems.add(missing, rule.name, "missing value", column)
    # a category's code is its index in the schema's vocabulary (credit_risk.encoding.CODE_OF)
    vocabulary = pa.array(rule.categories, pa.string())
    if pa.types.is_dictionary(column.type):  # look up each distinct value once
        per_entry = pc.index_in(column.dictionary, value_set=vocabulary).fill_null(-1)
        entries = per_entry.to_numpy(zero_copy_only=False)
        codes = entries[column.indices.fill_null(0).to_numpy(zero_copy_only=False)]
        unknown = (codes < 0) & ~missing
    else:
        index = pc.index_in(column, value_set=vocabulary)
        unknown = _missing(index) & ~missing
        codes = index.fill_null(0).to_numpy(zero_copy_only=False)
    allowed = ", ".join(map(repr, rule.categories))
    problems.add(unknown, rule.name, f"unknown category (expected one of {allowed})", column)
    return np.where(missing | unknown, 0, codes).astype(np.float64), missing | unknown


def _check_number(
    rule: FieldRule, column: pa.Array, problems: Problems
) -> tuple[FloatArray, BoolArray]:
    missing = _missing(column)
    problems.add(missing, rule.name, "missing value", column)
    broken = missing.copy()
    numbers = column
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        parsable = pc.match_substring_regex(column, NUMBER_PATTERN).fill_null(True)
        not_number = ~np.asarray(parsable.to_numpy(zero_copy_only=False), dtype=bool)
        problems.add(not_number, rule.name, "not a number", column)
        broken |= not_number
        numbers = pc.if_else(parsable, column, pa.scalar(None, column.type))
    values = np.asarray(
        pc.cast(numbers, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )
    checks: list[tuple[BoolArray, str]] = [(~np.isfinite(values), "not a finite number")]
    if rule.whole:
        checks.append((values != np.floor(values), "not a whole number"))
    checks += [(~_within(values, op, lim), f"must be {op} {lim:g}") for op, lim in rule.bounds]
    for mask, reason in checks:
        fresh = mask & ~broken  # one reason per field and row: the first rule it breaks
        problems.add(fresh, rule.name, reason, column)
        broken |= fresh
    return values, broken


def _within(values: FloatArray, op: str, limit: float) -> BoolArray:
    with np.errstate(invalid="ignore"):
        result: BoolArray = {
            ">=": values >= limit,
            ">": values > limit,
            "<=": values <= limit,
            "<": values < limit,
        }[op]
    return result


def code_array(columns: Sequence[FloatArray], keep: BoolArray) -> FloatArray:
    """The code array (`credit_risk.encoding` layout) of the rows that passed."""
    out = np.empty((int(keep.sum()), len(columns)), dtype=np.float64)
    for j, values in enumerate(columns):
        out[:, j] = values[keep]
    return out
