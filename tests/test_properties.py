"""Properties of the pure scoring path, for any applicant the schema admits (hypothesis).

The strategy is built from `Applicant` itself (categories and numeric bounds), so a field added
to the schema is generated without touching this file. The models are real: a WoE scorecard
and a gradient-boosted pipeline, built as training builds them and fitted on the shipped data
once per module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import annotated_types
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from credit_risk.compiled import Scorer, compile_pipeline
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.policy import BAND_FLOORS, MAX_REASON_CODES, ScoreScaling, risk_bands
from credit_risk.schema import CATEGORIES, FEATURES, Applicant, Decision
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
    assert decision.risk_band == risk_bands(expected_score)[0]
    floor = BAND_FLOORS[decision.risk_band]
    assert expected_score[0] >= floor  # the band's floor is reached ...
    letters = list(BAND_FLOORS)
    if decision.risk_band != letters[0]:  # ... and the next better band's is not
        better = BAND_FLOORS[letters[letters.index(decision.risk_band) - 1]]
        assert expected_score[0] < better
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
