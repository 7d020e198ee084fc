"""Recourse: what would turn a decline into an approval, under the same model and policy.

The grid. An applicant who asked for amount A over D months may be offered an amount a that
is A itself or a whole multiple of `RECOURSE_AMOUNT_STEP` below A, down to the lowest such
multiple the schema admits (100 DM), and a term d that is D itself or a whole multiple of
`RECOURSE_TERM_STEP` below D, down to the schema's shortest term (1 month): every pair (a, d)
of those but (A, D). Every other field stays as the applicant stated it: they are not the
applicant's to choose.

The smallest change is the least shortening of the term, then the least lowering of the
amount: keep the term and lower the amount as little as is approved, if any amount is;
otherwise the longest shorter term at which some amount is approved, with the largest amount
approved at it. The term goes first because a lower amount over the same term only lowers the
instalment, so the instalment rate the applicant stated still holds as an upper bound.

A scorecard (`LinearScorecard`) is exact: its log-odds are a sum of per-field table entries, so
with every other field fixed the score depends on the amount and the term only through their
bins, and each (amount bin, term bin) pair is as good as its best grid point (its longest term,
then its largest amount). `PairTable` lists, once per model, every pair a request may move to
in the order above; per declined row it takes one lookup to find the first pair that the rest
of the application's points leave room for, vectorised over the rows. So the answer is the
smallest change on the whole grid, and "none" means that no grid point is approved. A row whose
answer lies within `UNSURE` of the threshold is scored again through the scorer itself, so
rounding can never make the tables and the decision disagree.

Any other model gets a bounded search with the model itself: at most `RECOURSE_SEARCH_TERMS`
terms times `RECOURSE_SEARCH_AMOUNTS` amounts spread over the grid (the requested ones first),
then at the best term found at most `RECOURSE_SEARCH_REFINE` amounts between the best amount and
the next one tried above it. Its answer is always approved and no candidate it tried is a
smaller change; it is the smallest on the whole grid when the grid has no more points than
that (a term of at most 12 months and an amount of at most 1,600 DM).

Recourse is computed only for declined rows; approvals cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Protocol, get_args

import annotated_types
import numpy as np

from credit_risk.arrays import BoolArray, FloatArray, IntArray
from credit_risk.compiled import LinearScorecard, Scorer
from credit_risk.policy import (
    RECOURSE_AMOUNT_STEP,
    RECOURSE_SEARCH_AMOUNTS,
    RECOURSE_SEARCH_REFINE,
    RECOURSE_SEARCH_TERMS,
    RECOURSE_TERM_STEP,
)
from credit_risk.schema import FEATURES, Applicant, RecourseMethod, describe_recourse

METHODS: Final[tuple[RecourseMethod, ...]] = get_args(RecourseMethod)
"""Method names; a method code is a position in this tuple."""
NOTHING_FOUND: Final = describe_recourse(None, None)
"""The sentence for a decline that no change within the allowed ranges turns around."""
APPROVED, FOUND, NONE = 0, 1, 2
"""Recourse state per row: not declined (no recourse), a change found, none on the grid."""
RECOURSE_COLUMNS: Final = 4
"""Columns of `RecourseColumns.as_array`: state, method code, amount, term."""
UNSURE: Final = 1e-9
"""A row with a candidate whose probability from the tables is this close to the threshold is
scored again through the scorer (the tables add up in another order than `predict`, so the two
differ by ~1e-15)."""


class Rule(Protocol):
    """What recourse needs of a decision rule (`credit_risk.decisions.DecisionRule`)."""

    @property
    def threshold(self) -> float:
        """The probability of default above which the rule declines."""
        ...

    def declines(self, probability: FloatArray) -> BoolArray:
        """The decision itself, per row."""
        ...


@dataclass(frozen=True)
class RecourseColumns:
    """One batch's recourse as columns: what the runner sends, the job writes and the answers
    are assembled from."""

    state: IntArray
    """`APPROVED`, `FOUND` or `NONE` per row."""
    method: IntArray
    """Index into `METHODS` per row."""
    credit_amount: FloatArray
    """The amount that would be approved, where `FOUND` (0 elsewhere)."""
    duration_months: IntArray
    """The term that would be approved, where `FOUND` (0 elsewhere)."""

    def as_array(self) -> FloatArray:
        """(n, `RECOURSE_COLUMNS`) numbers, to append to the runner's answer."""
        columns = (self.state, self.method, self.credit_amount, self.duration_months)
        return np.column_stack(columns).astype(np.float64)

    @classmethod
    def from_array(cls, array: FloatArray) -> RecourseColumns:
        """Inverse of `as_array`."""
        assert array.shape[1] == RECOURSE_COLUMNS, array.shape
        whole = array.astype(np.intp)
        return cls(whole[:, 0], whole[:, 1], array[:, 2].copy(), whole[:, 3])

    def records(self) -> list[dict[str, Any] | None]:
        """Per row, the `Recourse` layout as a dict (with its sentence), None for approvals."""
        columns = (self.method, self.credit_amount, self.duration_months)
        out: list[dict[str, Any] | None] = []
        for state, method, amount, term in zip(
            self.state.tolist(), *(c.tolist() for c in columns), strict=True
        ):
            if state == APPROVED:
                out.append(None)
                continue
            found = state == FOUND
            out.append(
                {
                    "found": found,
                    "credit_amount": amount if found else None,
                    "duration_months": term if found else None,
                    "method": METHODS[method],
                    "description": describe_recourse(amount, term) if found else NOTHING_FOUND,
                }
            )
        return out


@dataclass(frozen=True)
class RecourseFinder:
    """One model's recourse under its decision rule: built once per loaded model."""

    rule: Rule
    method: RecourseMethod
    solve: Callable[[FloatArray], tuple[BoolArray, FloatArray, FloatArray]]
    """Declined code rows -> (found, amount, term) per row."""

    @classmethod
    def for_model(cls, scorer: Scorer, rule: Rule) -> RecourseFinder:
        """Exact from a scorecard's tables, else a bounded search with the model itself."""
        if isinstance(scorer, LinearScorecard):
            return cls(rule, "exact", ExactRecourse(scorer, rule, PairTable.of(scorer)))
        return cls(rule, "search", SearchRecourse(scorer, rule))

    def columns(self, codes: FloatArray, probability: FloatArray) -> RecourseColumns:
        """For every row the rule declines, the smallest change on the grid it approves."""
        n = len(codes)
        state = np.full(n, APPROVED, dtype=np.intp)
        amount = np.zeros(n, dtype=np.float64)
        term = np.zeros(n, dtype=np.intp)
        rows = np.flatnonzero(self.rule.declines(probability))
        if rows.size:
            found, a, d = self.solve(codes[rows])
            state[rows] = np.where(found, FOUND, NONE)
            amount[rows] = np.where(found, a, 0.0)
            term[rows] = np.where(found, d, 0)
        method = np.full(n, METHODS.index(self.method), dtype=np.intp)
        return RecourseColumns(state, method, amount, term)


@dataclass(frozen=True)
class GridAxis:
    """One actionable field's grid: the requested value, or a whole multiple of `step` below
    it, down to `lowest` (the lowest multiple the schema admits). Vectorised over rows."""

    column: int
    step: float
    lowest: float

    @classmethod
    def for_field(cls, name: str, step: float) -> GridAxis:
        """The axis of a schema field, its lowest point read from the schema's bound."""
        lowest = step
        for bound in Applicant.model_fields[name].metadata:
            if isinstance(bound, annotated_types.Ge):
                lowest = math.ceil(float(bound.ge) / step) * step  # type: ignore[arg-type]
            elif isinstance(bound, annotated_types.Gt):
                lowest = (math.floor(float(bound.gt) / step) + 1) * step  # type: ignore[arg-type]
        return cls(FEATURES.index(name), step, lowest)

    def below(self, value: FloatArray) -> FloatArray:
        """The largest multiple of the step strictly below each value (may be under `lowest`)."""
        result: FloatArray = np.ceil(value / self.step) * self.step - self.step
        return result

    def bin_tops(self, edges: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Per scorecard bin below the last: its largest grid point (strictly below its upper
        edge), and whether that point lies in the bin at all and on the grid."""
        top = self.below(edges)
        lower = np.insert(edges[:-1], 0, -np.inf)
        return top, (top >= lower) & (top >= self.lowest)

    def spread(self, requested: FloatArray, slots: int) -> tuple[FloatArray, BoolArray]:
        """The requested value, then at most `slots - 1` grid points below it, spread evenly
        from the nearest down to the lowest (all of them when they fit), descending."""
        below, ok = self.between(self.lowest - self.step, requested, slots - 1)
        values = np.column_stack([requested, below])
        valid = np.column_stack([np.ones(len(requested), dtype=np.bool_), ok])
        return values, valid

    def between(
        self, low: FloatArray | float, high: FloatArray, slots: int
    ) -> tuple[FloatArray, BoolArray]:
        """At most `slots` grid points strictly between `low` and `high` (and >= `lowest`),
        descending, spread evenly when more lie there; unused slots are invalid (0)."""
        last = self.below(high) / self.step  # multiple indices, as whole floats
        lowest = np.maximum(np.floor(np.asarray(low) / self.step) + 1, self.lowest / self.step)
        first = np.broadcast_to(lowest, last.shape)
        count = np.maximum(last - first + 1, 0)[:, np.newaxis]
        j = np.arange(slots)[np.newaxis, :]
        dense = last[:, np.newaxis] - j
        fraction = (slots - 1 - j) / (slots - 1) if slots > 1 else np.ones_like(j)  # 1: nearest
        sparse = np.rint(first[:, np.newaxis] + (last - first)[:, np.newaxis] * fraction)
        index = np.where(count <= slots, dense, sparse)
        valid = j < count
        return np.where(valid, index * self.step, 0.0), valid


AMOUNT: Final = GridAxis.for_field("credit_amount", RECOURSE_AMOUNT_STEP)
TERM: Final = GridAxis.for_field("duration_months", float(RECOURSE_TERM_STEP))


@dataclass(frozen=True)
class PairTable:
    """A scorecard's (amount bin, term bin) pairs in the order recourse prefers them, per cell
    of the requested amount's and term's own bins: computed once per model.

    A request in cell (own amount bin, own term bin) may move to any lower bin with a grid
    point in it, or stay in its own. Its candidates are listed longest term bin first, then
    largest amount bin, without the own pair (whose points all score as the request), with
    the running minimum of their two table entries: the first candidate approved is the
    first whose running minimum is within what the rest of the application leaves.
    """

    amount_edges: FloatArray
    term_edges: FloatArray
    amount_tops: FloatArray
    term_tops: FloatArray
    count: IntArray
    """Candidates per cell (cell = own amount bin * term bins + own term bin)."""
    amount_bin: IntArray
    term_bin: IntArray
    running_min: FloatArray
    """(cells, candidates) table points summed, their running minimum (padded with its last)."""

    @classmethod
    def of(cls, card: LinearScorecard) -> PairTable:
        """Enumerate every cell's candidates once."""
        amount_edges, amount_points = card.bins(AMOUNT.column)
        term_edges, term_points = card.bins(TERM.column)
        amount_tops, amount_has = AMOUNT.bin_tops(amount_edges)
        term_tops, term_has = TERM.bin_tops(term_edges)
        cells = [
            [
                (b, e)
                for e in range(own_t, -1, -1)
                if e == own_t or term_has[e]
                for b in range(own_a, -1, -1)
                if (b == own_a or amount_has[b]) and (b, e) != (own_a, own_t)
            ]
            for own_a in range(len(amount_points))
            for own_t in range(len(term_points))
        ]
        width = max(1, *(len(c) for c in cells))
        pairs = np.zeros((len(cells), width, 2), dtype=np.intp)
        running = np.full((len(cells), width), np.inf)
        for i, cell in enumerate(cells):
            if cell:
                pairs[i, : len(cell)] = cell
                points = [amount_points[b] + term_points[e] for b, e in cell]
                running[i, : len(cell)] = np.minimum.accumulate(points)
                running[i, len(cell) :] = running[i, len(cell) - 1]
        return cls(
            amount_edges=amount_edges,
            term_edges=term_edges,
            amount_tops=np.append(amount_tops, 0.0),  # the last bin is never a lower one
            term_tops=np.append(term_tops, 0.0),
            count=np.array([len(c) for c in cells], dtype=np.intp),
            amount_bin=pairs[:, :, 0],
            term_bin=pairs[:, :, 1],
            running_min=running,
        )

    def values(
        self, codes: FloatArray, own: tuple[IntArray, IntArray], slot: IntArray | slice
    ) -> tuple[FloatArray, FloatArray]:
        """The amount and term of candidates `slot` of each row's cell (own bin: the request)."""
        cell = own[0] * len(self.term_tops) + own[1]
        b, e = self.amount_bin[cell, slot], self.term_bin[cell, slot]
        requested = codes[:, AMOUNT.column], codes[:, TERM.column]
        if isinstance(slot, slice):  # every candidate: rows along axis 0, candidates along 1
            own = (own[0][:, np.newaxis], own[1][:, np.newaxis])
            requested = (requested[0][:, np.newaxis], requested[1][:, np.newaxis])
        amount = np.where(b == own[0], requested[0], self.amount_tops[b])
        term = np.where(e == own[1], requested[1], self.term_tops[e])
        return amount, term


@dataclass(frozen=True)
class ModelCheck:
    """The scorer and the rule themselves, asked about changed applications."""

    scorer: Scorer
    rule: Rule

    def approves(
        self, codes: FloatArray, where: BoolArray, *, amounts: FloatArray, terms: FloatArray
    ) -> BoolArray:
        """Whether the rule approves each row's application with the candidate amount and
        term instead, scored by the scorer, where `where` holds (shape (m, ...); `amounts`
        and `terms` broadcast to it)."""
        approved = np.zeros(where.shape, dtype=np.bool_)
        if not where.any():
            return approved
        changed = codes[np.nonzero(where)[0]]  # a copy: fancy indexing
        changed[:, AMOUNT.column] = np.broadcast_to(amounts, where.shape)[where]
        changed[:, TERM.column] = np.broadcast_to(terms, where.shape)[where]
        approved[where] = ~self.rule.declines(self.scorer.probability(changed))
        return approved


@dataclass(frozen=True)
class ExactRecourse(ModelCheck):
    """A scorecard's recourse from its tables: each row's first approved candidate."""

    table: PairTable

    @cached_property
    def _threshold(self) -> tuple[float, float]:
        """The threshold as log-odds, and the width in log-odds of `UNSURE` around it."""
        t = self.rule.threshold
        if not 0 < t < 1:  # no finite log-odds: every row is scored through the scorer
            return 0.0, np.inf
        return math.log(t) - math.log1p(-t), UNSURE / (t * (1 - t))

    def __call__(self, codes: FloatArray) -> tuple[BoolArray, FloatArray, FloatArray]:
        """(found, amount, term) for declined code rows."""
        card, table = self.scorer, self.table
        assert isinstance(card, LinearScorecard)
        contributions = card.contributions(codes)
        logit = card.intercept + contributions.sum(axis=1)
        rest = logit - contributions[:, AMOUNT.column] - contributions[:, TERM.column]
        threshold_logit, band = self._threshold
        need = (threshold_logit - rest)[:, np.newaxis]  # approved: the pair's points <= need
        own = (
            np.searchsorted(table.amount_edges, codes[:, AMOUNT.column], side="right"),
            np.searchsorted(table.term_edges, codes[:, TERM.column], side="right"),
        )
        cell = own[0] * len(table.term_tops) + own[1]
        running = table.running_min[cell]
        first = (running > need + band).sum(axis=1)  # the first approved, where not unsure
        unsure = first != (running > need - band).sum(axis=1)
        found = first < table.count[cell]
        amount, term = table.values(codes, own, np.minimum(first, running.shape[1] - 1))
        if unsure.any():  # too close to the threshold to call from the tables: ask the scorer
            rows = np.flatnonzero(unsure)
            sure = self._first_approved(codes[rows], (own[0][rows], own[1][rows]))
            found[rows], amount[rows], term[rows] = sure
        return found, amount, term

    def _first_approved(
        self, codes: FloatArray, own: tuple[IntArray, IntArray]
    ) -> tuple[BoolArray, FloatArray, FloatArray]:
        """Every candidate of each row's cell scored through the scorer; the first approved."""
        cell = own[0] * len(self.table.term_tops) + own[1]
        amounts, terms = self.table.values(codes, own, slice(None))
        listed = np.arange(amounts.shape[1])[np.newaxis, :] < self.table.count[cell, np.newaxis]
        approved = self.approves(codes, listed, amounts=amounts, terms=terms)
        first = np.argmax(approved, axis=1)
        rows = np.arange(len(codes))
        found = np.asarray(approved.any(axis=1), dtype=np.bool_)
        return found, amounts[rows, first], terms[rows, first]


@dataclass(frozen=True)
class SearchRecourse(ModelCheck):
    """Any model's recourse by a bounded search of the grid, scored by the model itself."""

    def __call__(self, codes: FloatArray) -> tuple[BoolArray, FloatArray, FloatArray]:
        """A spread of terms times amounts, then the amount refined at the best term."""
        amounts, amount_ok = AMOUNT.spread(codes[:, AMOUNT.column], RECOURSE_SEARCH_AMOUNTS)
        terms, term_ok = TERM.spread(codes[:, TERM.column], RECOURSE_SEARCH_TERMS)
        ok = amount_ok[:, :, np.newaxis] & term_ok[:, np.newaxis, :]
        ok[:, 0, 0] = False  # the request itself
        candidates = {"amounts": amounts[:, :, np.newaxis], "terms": terms[:, np.newaxis, :]}
        found, amount, term = _smallest(self.approves(codes, ok, **candidates), amounts, terms)
        # the next amount tried above the best one: amounts descend, so one slot to the left
        slot = np.argmax(amounts == amount[:, np.newaxis], axis=1)
        rows = np.flatnonzero(found & (slot > 0))
        if rows.size:
            above = amounts[rows, slot[rows] - 1]
            extra, extra_ok = AMOUNT.between(amount[rows], above, RECOURSE_SEARCH_REFINE)
            at_term = term[rows, np.newaxis]
            better = self.approves(codes[rows], extra_ok, amounts=extra, terms=at_term)
            best = np.where(better, extra, -np.inf).max(axis=1)
            amount[rows] = np.maximum(amount[rows], best)
        return found, amount, term


def _smallest(
    approved: BoolArray, amounts: FloatArray, terms: FloatArray
) -> tuple[BoolArray, FloatArray, FloatArray]:
    """Per row of an (m, amounts, terms) grid: the longest approved term, then the largest
    amount approved at it."""
    term = np.where(approved, terms[:, np.newaxis, :], -np.inf).max(axis=(1, 2))
    found: BoolArray = np.isfinite(term)
    at_term = approved & (terms[:, np.newaxis, :] == term[:, np.newaxis, np.newaxis])
    amount = np.where(at_term, amounts[:, :, np.newaxis], -np.inf).max(axis=(1, 2))
    return found, np.where(found, amount, 0.0), np.where(found, term, 0.0)
