"""Recourse against an independent brute force over the whole grid (hypothesis).

The brute force scores every grid point (the requested amount or a whole multiple of the amount
step below it, the requested term or any shorter one) with the scorer's own `probability` and
takes the first approved in the documented order: longest term first, then largest amount. The
models are real: the quickly trained served model (`model_tag`), a gradient-boosted pipeline fitted
on the shipped data, and tiny scorecards built by hand to reach the corners (U-shaped amounts,
fractional cut points, bins without a grid point, a threshold exactly on a candidate).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from credit_risk.arrays import FloatArray
from credit_risk.compiled import LinearScorecard, Scorer, compile_pipeline
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import load_serving_model
from credit_risk.policy import (
    RECOURSE_AMOUNT_STEP,
    RECOURSE_SEARCH_AMOUNTS,
    RECOURSE_SEARCH_REFINE,
    RECOURSE_SEARCH_TERMS,
    RECOURSE_TERM_STEP,
    ScoreScaling,
)
from credit_risk.recourse import (
    AMOUNT,
    APPROVED,
    FOUND,
    NONE,
    TERM,
    RecourseColumns,
    RecourseFinder,
)
from credit_risk.schema import (
    CATEGORIES,
    FEATURES,
    Applicant,
    Decision,
    Recourse,
    describe_recourse,
    example_applicant,
)
from credit_risk.training.data import load_dataset
from credit_risk.training.estimators import build_pipeline
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import reference_codes
from tests.test_properties import BOOSTED_PARAMS, PROPERTY_SETTINGS, applicants

A, D = FEATURES.index("credit_amount"), FEATURES.index("duration_months")
ACTIONABLE = {"credit_amount", "duration_months"}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread, as the served runner has (see tests/test_properties.py)."""
    with threadpool_limits(limits=1):
        yield


def grid(amount: float, term: int) -> list[tuple[float, int]]:
    """Every grid point but the request, longest term first, then largest amount."""
    step = int(RECOURSE_AMOUNT_STEP)
    amounts = [amount, *reversed(range(step, math.ceil(amount), step))]
    terms = range(term, 0, -RECOURSE_TERM_STEP)
    return [(float(a), t) for t in terms for a in amounts if (a, t) != (amount, term)]


def brute_force(scorer: Scorer, rule: DecisionRule, codes: FloatArray) -> tuple[float, int] | None:
    """The first grid point the rule approves, scored one by one by the scorer itself."""
    points = grid(float(codes[A]), int(codes[D]))
    if not points:
        return None
    rows = np.repeat(codes[np.newaxis, :], len(points), axis=0)
    rows[:, A] = [a for a, _ in points]
    rows[:, D] = [t for _, t in points]
    approved = ~rule.declines(scorer.probability(rows))
    return points[int(np.argmax(approved))] if approved.any() else None


def recourse_of(scorer: Scorer, rule: DecisionRule, codes: FloatArray) -> RecourseColumns:
    """The recourse columns of these rows, as the runner and the job compute them."""
    probability, _ = scorer.predict(codes)
    return RecourseFinder.for_model(scorer, rule).columns(codes, probability)


def answer(columns: RecourseColumns, i: int) -> tuple[float, int] | None:
    """Row i's recourse as the brute force states it (None: none within the ranges)."""
    assert columns.state[i] in (FOUND, NONE)
    if columns.state[i] == NONE:
        return None
    return float(columns.credit_amount[i]), int(columns.duration_months[i])


def with_request(applicant: Applicant, amount: float, term: int) -> Applicant:
    """The same applicant asking for another amount and term (validated by the schema)."""
    return Applicant.model_validate(
        {**applicant.model_dump(), "credit_amount": amount, "duration_months": term}
    )


def requests(max_amount: float, max_term: int) -> st.SearchStrategy[Applicant]:
    """Any applicant the API accepts, asking for at most `max_amount` over `max_term` months;
    whole hundreds, sub-hundred amounts and odd cents all come up."""
    amount = st.one_of(
        st.integers(1, int(max_amount) // 100).map(lambda k: 100.0 * k),
        st.floats(min_value=0.01, max_value=max_amount, allow_nan=False),
    )
    return st.builds(with_request, applicants, amount, st.integers(1, max_term))


def rule_at(threshold: float) -> DecisionRule:
    return DecisionRule(threshold=threshold, scaling=ScoreScaling(), model_version="t")


# --- the served model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(model_tag: str) -> tuple[Scorer, DecisionRule]:
    """The quickly trained real model, as serving loads it, and its own decision rule."""
    model = load_serving_model(model_tag)
    return model.scorer, DecisionRule.from_model(model.tag, model.metadata)


@settings(PROPERTY_SETTINGS, max_examples=150)
@given(applicant=requests(25_000, 120))
def test_served_model_recourse_is_the_first_approved_grid_point(
    served: tuple[Scorer, DecisionRule], applicant: Applicant
) -> None:
    scorer, rule = served
    codes = encode_applicants([applicant])
    columns = recourse_of(scorer, rule, codes)
    probability, _ = scorer.predict(codes)
    if not rule.declines(probability)[0]:
        assert columns.state[0] == APPROVED
        return
    if isinstance(scorer, LinearScorecard):  # exact: the smallest change on the whole grid
        assert answer(columns, 0) == brute_force(scorer, rule, codes[0])
    found = answer(columns, 0)
    if found is not None:  # applying it: the same applicant with those two fields, approved
        changed = encode_applicants([with_request(applicant, *found)])
        assert not rule.declines(scorer.probability(changed))[0]


@PROPERTY_SETTINGS
@given(applicant=requests(1_000_000, 120))
def test_served_model_recourse_over_the_whole_range_is_approved_and_on_the_grid(
    served: tuple[Scorer, DecisionRule], applicant: Applicant
) -> None:
    scorer, rule = served
    codes = encode_applicants([applicant])
    records = rule.records(*scorer.predict(codes), recourse_of(scorer, rule, codes))
    decision = Decision.model_validate(records[0])
    if decision.decision == "approve":
        assert decision.recourse is None
        return
    recourse = decision.recourse
    assert recourse is not None
    assert recourse.method == ("exact" if isinstance(scorer, LinearScorecard) else "search")
    assert recourse.description == describe_recourse(
        recourse.credit_amount, recourse.duration_months
    )
    if not recourse.found:
        return
    assert recourse.credit_amount is not None
    assert recourse.duration_months is not None
    points = {(applicant.credit_amount, applicant.duration_months)}
    assert (recourse.credit_amount, recourse.duration_months) not in points
    assert recourse.credit_amount <= applicant.credit_amount
    assert recourse.duration_months <= applicant.duration_months
    assert recourse.credit_amount == applicant.credit_amount or (
        recourse.credit_amount % RECOURSE_AMOUNT_STEP == 0
    )
    changed = with_request(applicant, recourse.credit_amount, recourse.duration_months)
    assert not rule.declines(scorer.probability(encode_applicants([changed])))[0]


def test_served_model_on_the_shipped_applicants(served: tuple[Scorer, DecisionRule]) -> None:
    scorer, rule = served
    codes = encode_frame(load_dataset().X)
    columns = recourse_of(scorer, rule, codes)
    probability, _ = scorer.predict(codes)
    declined = rule.declines(probability)
    assert ((columns.state != APPROVED) == declined).all()
    assert {FOUND, NONE} <= set(columns.state[declined].tolist())  # both outcomes are real
    for i in np.flatnonzero(declined)[::4]:  # every fourth decline against the brute force
        if isinstance(scorer, LinearScorecard):
            assert answer(columns, i) == brute_force(scorer, rule, codes[i]), i


# --- a gradient-boosted pipeline: the bounded search ------------------------------------------


@dataclass(frozen=True)
class Recorder:
    """A real scorer that keeps every row it is asked about (what the search tried)."""

    scorer: Scorer
    asked: list[FloatArray] = field(default_factory=list)

    def predict(self, codes: FloatArray) -> tuple[FloatArray, FloatArray]:
        return self.scorer.predict(codes)

    def probability(self, codes: FloatArray) -> FloatArray:
        self.asked.append(codes.copy())
        return self.scorer.probability(codes)


@pytest.fixture(scope="module")
def boosted() -> Scorer:
    """The served boosted family, built and fitted as training does, on the shipped data."""
    ds = load_dataset()
    pipeline = build_pipeline("hgb", BOOSTED_PARAMS).fit(ds.X, ds.y)
    return compile_pipeline(pipeline, reference_codes(encode_frame(ds.X)))


BOOSTED_RULE = rule_at(0.25)
"""A threshold where this small boosted model declines some and approves others."""


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(applicant=requests(60_000, 120))
def test_search_answer_is_approved_and_the_smallest_it_tried(
    boosted: Scorer, applicant: Applicant
) -> None:
    codes = encode_applicants([applicant])
    recorder = Recorder(boosted)
    columns = recourse_of(recorder, BOOSTED_RULE, codes)  # type: ignore[arg-type]
    if columns.state[0] == APPROVED:
        assert not recorder.asked
        return
    if not recorder.asked:  # a request of at most 100 DM over 1 month: nothing to try
        assert grid(applicant.credit_amount, applicant.duration_months) == []
        assert columns.state[0] == NONE
        return
    tried = np.concatenate(recorder.asked)
    others = [j for j in range(len(FEATURES)) if j not in (A, D)]
    assert (tried[:, others] == codes[0, others]).all(), "only the amount and term change"
    assert len(tried) <= RECOURSE_SEARCH_TERMS * RECOURSE_SEARCH_AMOUNTS + RECOURSE_SEARCH_REFINE
    approved = tried[~BOOSTED_RULE.declines(boosted.probability(tried))]
    found = answer(columns, 0)
    if found is None:
        assert len(approved) == 0
        return
    amount, term = found
    assert np.any((approved[:, A] == amount) & (approved[:, D] == term))
    order = np.lexsort((-approved[:, A], -approved[:, D]))  # longest term, then largest amount
    assert (approved[order[0], A], approved[order[0], D]) == (amount, term)
    assert (amount, term) in grid(applicant.credit_amount, applicant.duration_months)
    # at that term, the grid amounts between the spread amounts around the answer were tried
    values, ok = AMOUNT.spread(codes[:, A], RECOURSE_SEARCH_AMOUNTS)
    spread = values[0][ok[0]]
    if (spread > amount).any():
        low, high = spread[spread <= amount].max(), spread[spread > amount].min()
        gap = {a for a, t in grid(high, term) if t == term and a > low}
        at_term = set(tried[tried[:, D] == term, A].tolist())
        assert len(at_term & gap) == min(len(gap), RECOURSE_SEARCH_REFINE)


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(applicant=requests(RECOURSE_SEARCH_AMOUNTS * RECOURSE_AMOUNT_STEP, RECOURSE_SEARCH_TERMS))
def test_search_of_a_grid_within_its_budget_is_the_brute_force(
    boosted: Scorer, applicant: Applicant
) -> None:
    codes = encode_applicants([applicant])
    columns = recourse_of(boosted, BOOSTED_RULE, codes)
    if columns.state[0] != APPROVED:
        assert answer(columns, 0) == brute_force(boosted, BOOSTED_RULE, codes[0])


def test_search_finds_changes_and_says_search(boosted: Scorer) -> None:
    codes = encode_frame(load_dataset().X)[:300]
    columns = recourse_of(boosted, BOOSTED_RULE, codes)
    records = [r for r in columns.records() if r is not None]
    assert {r["method"] for r in records} == {"search"}
    assert {r["found"] for r in records} == {True, False}


# --- tiny scorecards: the corners of the exact method ------------------------------------------


@dataclass(frozen=True)
class TinyScorecard(LinearScorecard):
    """A hand-built scorecard that records what it is asked to score."""

    asked: list[FloatArray] = field(default_factory=list)

    def probability(self, codes: FloatArray) -> FloatArray:
        self.asked.append(codes.copy())
        return super().probability(codes)


def tiny_scorecard(
    amount: tuple[list[float], list[float]],
    term: tuple[list[float], list[float]],
    checking: list[float],
    intercept: float,
) -> TinyScorecard:
    """Amount and term bins (edges, points per bin), points per current-account category;
    every other field scores 0."""
    numeric, tables = [], []
    for j, name in enumerate(FEATURES):
        if name in CATEGORIES:
            size = len(CATEGORIES[name])
            tables.append(checking if name == "checking_account" else [0.0] * size)
        else:
            edges, points = {"credit_amount": amount, "duration_months": term}.get(
                name, ([], [0.0])
            )
            numeric.append((j, np.asarray(edges, dtype=np.float64)))
            tables.append(points)
    flat = [np.asarray(t, dtype=np.float64) for t in tables]
    sizes = np.array([len(t) for t in flat], dtype=np.intp)
    return TinyScorecard(
        intercept=intercept,
        numeric_edges=tuple(numeric),
        flat_table=np.concatenate(flat),
        offsets=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp),
        best=np.array([t.min() for t in flat]),
    )


AMOUNT_EDGES = [1007.0, 1055.0, 1355.5, 3939.0, 6468.0]
"""A bin with no whole hundred in it (1007-1055), a fractional cut, as trained tables have."""
TERM_EDGES = [9.0, 12.5, 18.0, 36.0]

points = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(
    amount_points=st.lists(points, min_size=6, max_size=6),
    term_points=st.lists(points, min_size=5, max_size=5),
    checking=st.lists(points, min_size=4, max_size=4),
    intercept=st.floats(min_value=-3.0, max_value=1.0),
    threshold=st.floats(min_value=0.02, max_value=0.9),
    request=st.tuples(
        st.one_of(st.floats(min_value=1.0, max_value=9_000.0), st.sampled_from([100.0, 1055.0])),
        st.integers(1, 60),
        st.integers(0, 3),
    ),
)
def test_tiny_scorecard_exact_is_the_brute_force(
    amount_points: list[float],
    term_points: list[float],
    checking: list[float],
    intercept: float,
    threshold: float,
    request: tuple[float, int, int],
) -> None:
    card = tiny_scorecard(
        (AMOUNT_EDGES, amount_points), (TERM_EDGES, term_points), checking, intercept
    )
    rule = rule_at(threshold)
    codes = encode_applicants([Applicant.model_validate(example_applicant())])
    codes[0, A], codes[0, D] = request[0], request[1]
    codes[0, FEATURES.index("checking_account")] = request[2]
    columns = recourse_of(card, rule, codes)
    if columns.state[0] == APPROVED:
        assert not rule.declines(card.probability(codes))[0]
        return
    assert answer(columns, 0) == brute_force(card, rule, codes[0])


def test_a_candidate_exactly_at_the_threshold_is_decided_by_the_scorer() -> None:
    card = tiny_scorecard(
        (AMOUNT_EDGES, [0.4, 0.1, 0.3, -0.6, 0.0, 0.5]),
        (TERM_EDGES, [-1.0, -0.4, 0.0, 0.3, 0.7]),
        [0.0, 0.0, 0.0, 0.0],
        -1.0,
    )
    codes = encode_applicants([Applicant.model_validate(example_applicant())])
    codes[0, A], codes[0, D] = 8_000.0, 24
    at = codes.copy()
    at[0, A] = 3_900.0  # the largest whole hundred of the best amount bin
    threshold = float(card.probability(at)[0])  # exactly its probability: approved (p <= t)
    card.asked.clear()
    columns = recourse_of(card, rule_at(threshold), codes)
    assert card.asked, "the tables could not call it, so the scorer was asked"
    asked = np.concatenate(card.asked)
    others = [j for j in range(len(FEATURES)) if j not in (A, D)]
    assert (asked[:, others] == codes[0, others]).all()
    assert answer(columns, 0) == (3_900.0, 24) == brute_force(card, rule_at(threshold), codes[0])


def test_far_from_the_threshold_the_tables_alone_decide() -> None:
    card = tiny_scorecard(
        (AMOUNT_EDGES, [0.4, 0.1, 0.3, -0.6, 0.0, 0.5]),
        (TERM_EDGES, [-1.0, -0.4, 0.0, 0.3, 0.7]),
        [0.0] * 4,
        -1.0,
    )
    codes = encode_applicants([Applicant.model_validate(example_applicant())] * 50)
    codes[:, A] = np.linspace(500, 20_000, 50)
    recourse_of(card, rule_at(0.2), codes)
    assert card.asked == []


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_degenerate_threshold_still_gets_the_brute_force(threshold: float) -> None:
    card = tiny_scorecard((AMOUNT_EDGES, [0.0] * 6), (TERM_EDGES, [0.0] * 5), [0.0] * 4, 0.0)
    codes = encode_applicants([Applicant.model_validate(example_applicant())])
    columns = recourse_of(card, rule_at(threshold), codes)
    declined = rule_at(threshold).declines(card.probability(codes))[0]
    assert (columns.state[0] != APPROVED) == declined
    if declined:
        assert answer(columns, 0) == brute_force(card, rule_at(threshold), codes[0])


# --- the grid, the columns and the words ------------------------------------------------------


def test_the_grid_runs_down_to_the_schemas_lowest_points() -> None:
    # the smallest positive whole step (the schema wants an amount above 0) and the shortest term
    assert (AMOUNT.lowest, TERM.lowest) == (RECOURSE_AMOUNT_STEP, 1.0)
    applicant = Applicant.model_validate(example_applicant())
    with_request(applicant, AMOUNT.lowest, int(TERM.lowest))
    for amount, term in ((AMOUNT.lowest - RECOURSE_AMOUNT_STEP, 1), (AMOUNT.lowest, 0)):
        with pytest.raises(ValidationError):
            with_request(applicant, amount, term)


@given(requested=st.floats(min_value=0.01, max_value=1_000_000), slots=st.integers(2, 20))
@PROPERTY_SETTINGS
def test_spread_starts_at_the_request_and_covers_the_grid_below_it(
    requested: float, slots: int
) -> None:
    values, valid = AMOUNT.spread(np.array([requested]), slots)
    chosen = values[0][valid[0]]
    below = [a for a, _ in grid(requested, 1)]
    assert chosen[0] == requested
    assert len(chosen) <= slots
    assert list(chosen[1:]) == sorted(set(chosen[1:]), reverse=True)
    assert set(chosen[1:]) <= set(below)
    if len(below) <= slots - 1:
        assert list(chosen[1:]) == below
    elif slots == 2:
        assert list(chosen[1:]) == below[:1]  # one slot: the nearest
    else:
        assert (chosen[1], chosen[-1]) == (below[0], below[-1])  # the nearest and the lowest


def test_columns_travel_through_the_runners_array() -> None:
    columns = RecourseColumns(
        state=np.array([APPROVED, FOUND, NONE]),
        method=np.array([0, 1, 1]),
        credit_amount=np.array([0.0, 3200.0, 0.0]),
        duration_months=np.array([0, 24, 0]),
    )
    again = RecourseColumns.from_array(columns.as_array())
    for name in ("state", "method", "credit_amount", "duration_months"):
        np.testing.assert_array_equal(getattr(again, name), getattr(columns, name))
    assert again.records() == [
        None,
        {
            "found": True,
            "credit_amount": 3200.0,
            "duration_months": 24,
            "method": "search",
            "description": "An amount of 3,200 DM over 24 months would be approved.",
        },
        {
            "found": False,
            "credit_amount": None,
            "duration_months": None,
            "method": "search",
            "description": "No lower amount or shorter term within the allowed ranges would be "
            "approved.",
        },
    ]


@pytest.mark.parametrize(
    ("amount", "term", "words"),
    [
        (3200.0, 24, "An amount of 3,200 DM over 24 months would be approved."),
        (4500.5, 1, "An amount of 4,500.50 DM over 1 month would be approved."),
        (250_000.0, 120, "An amount of 250,000 DM over 120 months would be approved."),
        (
            None,
            None,
            "No lower amount or shorter term within the allowed ranges would be approved.",
        ),
    ],
)
def test_the_sentence(amount: float | None, term: int | None, words: str) -> None:
    assert describe_recourse(amount, term) == words


def test_a_recourse_names_amount_and_term_exactly_when_found() -> None:
    base: dict[str, Any] = {"method": "exact", "description": "x"}
    Recourse.model_validate({**base, "found": True, "credit_amount": 1.0, "duration_months": 1})
    Recourse.model_validate(
        {**base, "found": False, "credit_amount": None, "duration_months": None}
    )
    for bad in (
        {"found": True, "credit_amount": None, "duration_months": 12},
        {"found": False, "credit_amount": 100.0, "duration_months": None},
        {"found": True, "credit_amount": 0.0, "duration_months": 12},
    ):
        with pytest.raises(ValidationError):
            Recourse.model_validate({**base, **bad})


def test_recourse_changes_only_fields_the_applicant_chooses() -> None:
    changed = {"credit_amount", "duration_months"}
    assert changed == ACTIONABLE
    assert set(Recourse.model_fields) - {"found", "method", "description"} == changed
