"""The batch scoring function the job and its Spark twin both apply to every Arrow batch.

Validate -> code array -> compiled scorer -> recourse -> `DecisionRule.columns`: the served
model's scorer, the runner's recourse and the API's decision code, so a row gets exactly the
answer `/classify` gives. Output is columnar end to end; no per-row Python objects.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from credit_risk.compiled import Scorer
from credit_risk.decisions import DecisionColumns, DecisionRule
from credit_risk.model_store import load_serving_model
from credit_risk.policy import MAX_REASON_CODES, REASONS, RISK_BANDS
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio.validation import Checked, check_types, code_array, validate
from credit_risk.recourse import APPROVED, FOUND, METHODS, RecourseColumns, RecourseFinder
from credit_risk.schema import FEATURES

ROW_COLUMN: Final = "row"
"""Input row number (1 = first data row): with the run id, what identifies a bulk decision."""

_REASON_CODES: Final = pa.array([REASONS[f][0] for f in FEATURES], pa.string())
_BANDS: Final = pa.array(RISK_BANDS, pa.string())
_DECISIONS: Final = pa.array(["approve", "decline"], pa.string())
_METHODS: Final = pa.array(METHODS, pa.string())

DECISION_FIELDS: Final[tuple[pa.Field, ...]] = (
    pa.field("probability_of_default", pa.float64(), nullable=False),
    pa.field("score", pa.int64(), nullable=False),
    pa.field("risk_band", pa.string(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    *(pa.field(f"reason_{k}", pa.string()) for k in range(1, MAX_REASON_CODES + 1)),
    *(pa.field(f"reason_{k}_points", pa.float64()) for k in range(1, MAX_REASON_CODES + 1)),
    pa.field("recourse_credit_amount", pa.float64()),
    pa.field("recourse_duration_months", pa.int64()),
    pa.field("recourse_method", pa.string()),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
)
"""What the job adds after the id columns and the row number, in output order."""

QUARANTINE_FIELDS: Final[tuple[pa.Field, ...]] = (
    pa.field("field", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("value", pa.string()),
)
"""After the row number and the id columns: what was wrong (field null for a malformed row)."""


@dataclass
class StageTimer:
    """Seconds spent per stage (read, validate, encode, score, decide, write) across batches."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


@dataclass(frozen=True)
class ScoredBatch:
    """One input batch's outcome: decisions for the rows that passed, quarantine for the rest."""

    decisions: pa.RecordBatch
    quarantine: pa.RecordBatch


@dataclass(frozen=True)
class Layout:
    """Which columns a run reads and writes: needs no model, so a Spark driver can plan it."""

    id_columns: tuple[str, ...] = ()

    def input_columns(self) -> list[str]:
        """Columns to read: the id columns, then every applicant field."""
        return [*self.id_columns, *(f for f in FEATURES if f not in self.id_columns)]

    def check_input(self, schema: pa.Schema, where: str) -> None:
        """Refuse an input the job cannot score at all, before anything is written."""
        missing = [c for c in self.id_columns if c not in schema.names]
        if missing:
            msg = f"{where}: id column(s) {', '.join(map(repr, missing))} not in the input"
            raise RefusedInputError(msg)
        taken = {ROW_COLUMN} | {f.name for f in (*DECISION_FIELDS, *QUARANTINE_FIELDS)}
        clash = [c for c in self.id_columns if c in taken]
        if clash:
            msg = f"id column(s) {', '.join(map(repr, clash))} clash with output column names"
            raise RefusedInputError(msg)
        check_types(schema, where)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The row number, id columns as read, then the decision columns."""
        return pa.schema([*self._id_fields(input_schema), *DECISION_FIELDS])

    def quarantine_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """Row number, id columns as read, field, reason and the offending value as text."""
        return pa.schema([*self._id_fields(input_schema), *QUARANTINE_FIELDS])

    def _id_fields(self, schema: pa.Schema) -> list[pa.Field]:
        ids = [schema.field(c).with_nullable(True) for c in self.id_columns]
        return [pa.field(ROW_COLUMN, pa.int64()), *ids]


@dataclass(frozen=True)
class BatchScorer:
    """The served model's scorer and decision rule, applied to Arrow batches."""

    layout: Layout
    scorer: Scorer
    rule: DecisionRule
    run_id: str

    @classmethod
    def load(cls, tag: str, run_id: str, id_columns: Sequence[str] = ()) -> BatchScorer:
        """The model from the BentoML store, decided on exactly as the API decides."""
        loaded = load_serving_model(tag)
        rule = DecisionRule.from_model(loaded.tag, loaded.metadata)
        return cls(Layout(tuple(id_columns)), loaded.scorer, rule, run_id)

    @cached_property
    def recourse(self) -> RecourseFinder:
        """The model's recourse, as the runner finds it (built once per scorer)."""
        return RecourseFinder.for_model(self.scorer, self.rule)

    def score(
        self, batch: pa.RecordBatch, rows: npt.NDArray[np.int64], timer: StageTimer | None = None
    ) -> ScoredBatch:
        """Validate, encode, score and decide one batch; `rows` numbers its rows in the input."""
        timer = timer or StageTimer()
        with timer.stage("validate"):
            checked = validate(batch)
            keep = ~checked.bad
        with timer.stage("encode"):
            codes = code_array(checked.columns, keep)
        with timer.stage("score"):
            probability, excess = self.scorer.predict(codes)
        with timer.stage("recourse"):
            recourse = self.recourse.columns(codes, probability)
        with timer.stage("decide"):
            columns = self.rule.columns(probability, excess, recourse)
            decisions = self._decisions(batch, rows, keep, columns)
            quarantine = self._quarantine(batch, rows, checked)
        return ScoredBatch(decisions, quarantine)

    def quarantine(self, batch: pa.RecordBatch, rows: npt.NDArray[np.int64]) -> pa.RecordBatch:
        """Only the quarantine records of a batch: the contract checks without scoring."""
        return self._quarantine(batch, rows, validate(batch))

    def _decisions(
        self,
        batch: pa.RecordBatch,
        rows: npt.NDArray[np.int64],
        keep: npt.NDArray[np.bool_],
        c: DecisionColumns,
    ) -> pa.RecordBatch:
        n = len(c.probability)
        mask = pa.array(keep)
        arrays = [pa.array(rows[keep], pa.int64())]
        arrays += [batch.column(name).filter(mask) for name in self.layout.id_columns]
        arrays += [
            pa.array(c.probability, pa.float64()),
            pa.array(c.score, pa.int64()),
            _BANDS.take(pa.array(c.band)),
            _DECISIONS.take(pa.array(c.declined.astype(np.int8))),
        ]
        absent = [c.reason_count <= k for k in range(MAX_REASON_CODES)]
        arrays += [
            _REASON_CODES.take(pa.array(c.reason_feature[:, k], mask=absent[k]))
            for k in range(MAX_REASON_CODES)
        ]
        arrays += [
            pa.array(c.reason_points[:, k], pa.float64(), mask=absent[k])
            for k in range(MAX_REASON_CODES)
        ]
        assert c.recourse is not None
        arrays += _recourse_arrays(c.recourse)
        arrays += [pa.repeat(self.rule.model_version, n), pa.repeat(self.run_id, n)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.layout.output_schema(batch.schema))

    def _quarantine(
        self, batch: pa.RecordBatch, rows: npt.NDArray[np.int64], checked: Checked
    ) -> pa.RecordBatch:
        p = checked.problems
        schema = self.layout.quarantine_schema(batch.schema)
        if not p.positions:
            return pa.RecordBatch.from_pylist([], schema=schema)
        where = np.concatenate(p.positions)
        order = np.argsort(where, kind="stable")  # by row; fields in schema order within a row
        take = pa.array(where[order])
        sizes = [len(w) for w in p.positions]
        arrays = [pa.array(rows[where[order]], pa.int64())]
        arrays += [batch.column(name).take(take) for name in self.layout.id_columns]
        arrays += [
            pa.array(np.repeat(p.fields, sizes)[order], pa.string()),
            pa.array(np.repeat(p.reasons, sizes)[order], pa.string()),
            pa.concat_arrays(p.values).take(pa.array(order)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _recourse_arrays(r: RecourseColumns) -> list[pa.Array]:
    """Amount and term where a change was found, the method on every decline; else null."""
    missing = r.state != FOUND
    return [
        pa.array(r.credit_amount, pa.float64(), mask=missing),
        pa.array(r.duration_months, pa.int64(), mask=missing),
        _METHODS.take(pa.array(r.method, mask=r.state == APPROVED)),
    ]


def malformed_rows(
    schema: pa.Schema, rows: Sequence[tuple[int, str, str]], id_columns: Sequence[str]
) -> pa.RecordBatch:
    """Quarantine records for input rows that could not even be split into fields."""
    nothing: list[object] = [None] * len(rows)
    data: dict[str, list[object]] = {ROW_COLUMN: [row for row, _, _ in rows]}
    data |= dict.fromkeys(id_columns, nothing)
    data |= {"field": nothing, "reason": [reason for _, reason, _ in rows]}
    data["value"] = [text for _, _, text in rows]
    return pa.RecordBatch.from_pydict(data, schema=schema)
