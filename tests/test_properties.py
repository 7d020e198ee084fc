"""Properties of the pure scoring path, for any applicant the schema admits (hypothesis).

The strategy is built from `Applicant` itself (categories and numeric bounds), so a field added
to the schema is generated without touching this file. The models are real: a WoE scorecard
and a gradient-boosted pipeline, built as training builds them and fitted on the shipped data
once per module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import annotated_types
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from credit_risk.compiled import Scorer, compile_pipeline
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.policy import MAX_REASON_CODES, RISK_BANDS, ScoreScaling, markdown_tables
from credit_risk.portfolio.scoring import BatchScorer, Layout
from credit_risk.recourse import RecourseFinder
from credit_risk.schema import CATEGORIES, FEATURES, Applicant, Decision
from credit_risk.serving.shadow import WIDTH, Shadow, ShadowScorer
from credit_risk.training.data import load_dataset
from credit_risk.training.estimators import build_pipeline
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import reference_codes

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,  # a busy CI machine must not turn slowness into a failure
    derandomize=True,  # the same cases on every run and machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RANDOM_FIELDS = ("decision_id",)
"""Decision fields that are unique per call by design, so never compared across calls."""


def _bounds(name: str) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in Applicant.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min_value"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds["min_value"], bounds["exclude_min"] = item.gt, True
        elif isinstance(item, annotated_types.Le):
            bounds["max_value"] = item.le
        elif isinstance(item, annotated_types.Lt):
            bounds["max_value"], bounds["exclude_max"] = item.lt, True
    return bounds


def _field_strategy(name: str) -> st.SearchStrategy[Any]:
    if name in CATEGORIES:
        return st.sampled_from(CATEGORIES[name])
    bounds = _bounds(name)
    if Applicant.model_fields[name].annotation is int:
        low = bounds["min_value"] + int(bounds.get("exclude_min", False))
        high = bounds["max_value"] - int(bounds.get("exclude_max", False))
        return st.integers(min_value=low, max_value=high)
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


applicants = st.builds(
    Applicant.model_validate,
    st.fixed_dictionaries({name: _field_strategy(name) for name in FEATURES}),
)
"""Any applicant the API accepts, over the whole admitted range (not just the training data)."""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread, as the served runner has (bentofile.yaml): thread pools on a
    busy 2-core machine made each boosted-tree call ~50x slower."""
    with threadpool_limits(limits=1):
        yield


SCORECARD_PARAMS = {"max_bins": 8, "smoothing": 8.0, "C": 0.3}
BOOSTED_PARAMS = {
    "learning_rate": 0.1,
    "max_leaf_nodes": 4,
    "max_iter": 20,
    "l2_regularization": 1.0,
}
"""Small real configurations of the two served families (the quick training search's)."""


@pytest.fixture(scope="module")
def scorers() -> dict[str, Scorer]:
    """Both scorer kinds the runner can serve, compiled from the production pipeline builder
    fitted on the real data."""
    ds = load_dataset()
    codes = encode_frame(ds.X)
    scorecard = build_pipeline("logreg", SCORECARD_PARAMS).fit(ds.X, ds.y)
    boosted = build_pipeline("hgb", BOOSTED_PARAMS).fit(ds.X, ds.y)
    return {
        "scorecard": compile_pipeline(scorecard),
        "boosted": compile_pipeline(boosted, reference_codes(codes)),
    }


POLICY = DecisionRule(threshold=1 / 6, scaling=ScoreScaling(), model_version="credit_risk:test")
"""Cost-optimal threshold in theory (bad approved = 5, good declined = 1), default scaling."""


def _comparable(decision: Decision) -> dict[str, Any]:
    return decision.model_dump(exclude=set(RANDOM_FIELDS))


@pytest.mark.parametrize("kind", ["scorecard", "boosted"])
@PROPERTY_SETTINGS
@given(applicant=applicants)
def test_any_valid_applicant_scores_consistently(
    scorers: dict[str, Scorer], kind: str, applicant: Applicant
) -> None:
    proba, excess = scorers[kind].predict(encode_applicants([applicant]))
    assert proba.shape == (1,)
    assert excess.shape == (1, len(FEATURES))
    assert 0.0 <= proba[0] <= 1.0
    assert np.isfinite(excess).all()
    assert (excess >= 0).all()

    decision = Decision.model_validate(POLICY.decide(proba, excess)[0].model_dump())
    expected_score = POLICY.scaling.score(proba)
    assert decision.probability_of_default == proba[0]
    assert decision.score == round(float(expected_score[0]))
    assert decision.risk_band == _published_band(decision.score)
    declined = proba[0] > POLICY.threshold
    assert decision.decision == ("decline" if declined else "approve")
    assert len(decision.reason_codes) <= MAX_REASON_CODES
    if not declined:
        assert decision.reason_codes == []
    points = [r.points for r in decision.reason_codes]
    assert all(p < 0 for p in points)
    assert points == sorted(points)  # the costliest reason first
    assert len({r.code for r in decision.reason_codes}) == len(decision.reason_codes)


@pytest.mark.parametrize("kind", ["scorecard", "boosted"])
@settings(PROPERTY_SETTINGS, max_examples=50)
@given(batch=st.lists(applicants, min_size=1, max_size=20), data=st.data())
def test_batch_equals_single_in_any_order(
    scorers: dict[str, Scorer], kind: str, batch: list[Applicant], data: st.DataObject
) -> None:
    scorer = scorers[kind]
    order = data.draw(st.permutations(range(len(batch))), label="order")
    shuffled = [batch[i] for i in order]

    proba, excess = scorer.predict(encode_applicants(shuffled))
    together = POLICY.decide(proba, excess)
    assert len(together) == len(shuffled)
    for applicant, decision in zip(shuffled, together, strict=True):
        p1, e1 = scorer.predict(encode_applicants([applicant]))
        alone = POLICY.decide(p1, e1)[0]
        assert _comparable(decision) == _comparable(alone)

    # and the permutation only permutes: scoring in the original order gives the same rows
    p0, e0 = scorer.predict(encode_applicants(batch))
    np.testing.assert_array_equal(p0[order], proba)
    np.testing.assert_array_equal(e0[order], excess)


@PROPERTY_SETTINGS
@given(batch=st.lists(applicants, min_size=1, max_size=30))
def test_serving_encoder_matches_training_encoder(batch: list[Applicant]) -> None:
    frame = pd.DataFrame([a.model_dump() for a in batch], columns=list(FEATURES))
    np.testing.assert_array_equal(encode_applicants(batch), encode_frame(frame))


@PROPERTY_SETTINGS
@given(p=st.floats(min_value=0.0, max_value=1.0))
def test_score_falls_as_risk_rises(p: float) -> None:
    scaling = ScoreScaling()
    below, at = scaling.score(np.array([max(p - 0.01, 0.0), p]))
    assert math.isfinite(at)
    assert below >= at


def _published_floors() -> list[tuple[str, int | None]]:
    """The band table as `credit-risk policy` prints it (and docs/model.md shows it):
    (band, lowest shown score), None for the last band's "any lower score"."""
    rows = re.findall(r"^\| ([A-Z]) \| ([^|]+) \|", markdown_tables(), flags=re.MULTILINE)
    floors = [(band, int(low) if low.strip().isdigit() else None) for band, low in rows]
    assert [band for band, _ in floors] == list(RISK_BANDS)
    return floors


PUBLISHED_FLOORS = _published_floors()


def _published_band(score: int) -> str:
    """What a reader of the policy table concludes from a shown score."""
    return next(band for band, low in PUBLISHED_FLOORS if low is None or score >= low)


@pytest.mark.parametrize("kind", ["scorecard", "boosted"])
@PROPERTY_SETTINGS
@given(batch=st.lists(applicants, min_size=1, max_size=8))
def test_band_follows_the_shown_score_on_every_path(
    scorers: dict[str, Scorer], kind: str, batch: list[Applicant]
) -> None:
    """Any applicant the schema accepts: the API's answer, the challenger's shadow record and
    the portfolio row each show a band that follows from the score they show, by the
    published cut-offs (and the three agree)."""
    scorer = scorers[kind]
    codes = encode_applicants(batch)
    proba, excess = scorer.predict(codes)
    answers = POLICY.records(proba, excess)
    recourse = RecourseFinder.for_model(scorer, POLICY).columns(codes, proba)
    runner_out = ShadowScorer(scorer, challenger=POLICY, champion=POLICY).append(
        np.column_stack([proba, excess, recourse.as_array()]), codes
    )
    shadow = Shadow(POLICY.model_version, {"threshold": POLICY.threshold}, "champion")
    records = shadow.records(len(batch), runner_out)
    table = pa.RecordBatch.from_pylist([a.model_dump() for a in batch])
    rows = np.arange(1, len(batch) + 1, dtype=np.int64)
    bulk = BatchScorer(Layout(), scorer, POLICY, "run").score(table, rows).decisions.to_pylist()
    assert runner_out.shape[1] > WIDTH
    assert len(records) == len(bulk) == len(answers)
    for answer, record, row in zip(answers, records, bulk, strict=True):
        assert record is not None
        for shown in (answer, record, row):
            assert shown["risk_band"] == _published_band(shown["score"])
        assert answer["score"] == record["score"] == row["score"]
        assert answer["risk_band"] == record["risk_band"] == row["risk_band"]


BAND_EDGES = [ScoreScaling().probability(s) for s in (579.5, 559.5, 529.5, 499.5, 579.76)]
"""Probabilities whose unrounded score sits on a band's rounding edge (and data row 715's)."""

scalings = st.builds(
    ScoreScaling,
    base_score=st.floats(min_value=300, max_value=900),
    base_odds_good_to_bad=st.floats(min_value=1.5, max_value=200),
    pdo=st.floats(min_value=5, max_value=100),
)


@settings(PROPERTY_SETTINGS, max_examples=3000)
@given(
    probability=st.floats(min_value=0.0, max_value=1.0),
    scaling=st.one_of(st.just(ScoreScaling()), scalings),
    threshold=st.floats(min_value=0.0, max_value=1.0),
)
@example(probability=0.0, scaling=ScoreScaling(), threshold=0.5)
@example(probability=1.0, scaling=ScoreScaling(), threshold=0.5)
@example(probability=5e-324, scaling=ScoreScaling(), threshold=0.5)
@example(probability=1 - 2**-53, scaling=ScoreScaling(), threshold=0.5)
@example(probability=BAND_EDGES[0], scaling=ScoreScaling(), threshold=0.5)
@example(probability=BAND_EDGES[1], scaling=ScoreScaling(), threshold=0.5)
@example(probability=BAND_EDGES[2], scaling=ScoreScaling(), threshold=0.5)
@example(probability=BAND_EDGES[3], scaling=ScoreScaling(), threshold=0.5)
@example(probability=BAND_EDGES[4], scaling=ScoreScaling(), threshold=0.5)
def test_band_follows_the_shown_score_for_any_probability(
    probability: float, scaling: ScoreScaling, threshold: float
) -> None:
    """Any raw probability in [0, 1] (the extremes included) under any stored scaling: the
    answer's band is the published band of the score it shows, and that score is the
    unrounded score to the nearest whole point."""
    rule = DecisionRule(threshold, scaling, "credit_risk:test")
    (answer,) = rule.records(np.array([probability]), np.zeros((1, len(FEATURES))))
    exact = float(scaling.score(np.array([probability]))[0])
    assert math.isfinite(exact)
    assert abs(answer["score"] - exact) <= 0.5
    assert answer["risk_band"] == _published_band(answer["score"])
