"""The runner's compiled scorers agree with scikit-learn on tiny real fitted models."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from credit_risk.compiled import (
    LinearScorecard,
    PipelineScorer,
    compile_pipeline,
)
from credit_risk.encoding import CATEGORICAL_MASK
from credit_risk.training.data import load_dataset
from credit_risk.training.preprocessing import SchemaEncoder, WoEEncoder, encode_frame
from credit_risk.training.reference import reference_codes


@pytest.fixture(scope="module")
def data() -> tuple:
    ds = load_dataset()
    return ds.X, ds.y, encode_frame(ds.X)


def test_linear_scorecard_equals_sklearn(data: tuple) -> None:
    X, y, codes = data
    pipe = Pipeline(
        [
            ("encode", SchemaEncoder()),
            ("woe", WoEEncoder()),
            ("clf", LogisticRegression(C=0.3, max_iter=1000)),
        ]
    ).fit(X, y)
    scorer = compile_pipeline(pipe)
    assert isinstance(scorer, LinearScorecard)
    proba, excess = scorer.predict(codes)
    np.testing.assert_allclose(proba, pipe.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert excess.shape == codes.shape
    assert excess.min() == 0.0  # every feature's best bin costs nothing
    # the log-odds decompose exactly: intercept + best bins + excess
    logit = np.log(proba / (1 - proba))
    np.testing.assert_allclose(
        logit, scorer.intercept + scorer.best.sum() + excess.sum(axis=1), atol=1e-9
    )


def test_linear_scorecard_is_row_independent(data: tuple) -> None:
    X, y, codes = data
    pipe = Pipeline(
        [("encode", SchemaEncoder()), ("woe", WoEEncoder()), ("clf", LogisticRegression())]
    ).fit(X, y)
    scorer = compile_pipeline(pipe)
    whole, _ = scorer.predict(codes[:100])
    single = np.concatenate([scorer.predict(codes[i : i + 1])[0] for i in range(100)])
    np.testing.assert_array_equal(whole, single)


def test_tree_pipeline_scores_on_codes_with_counterfactual_reasons(data: tuple) -> None:
    X, y, codes = data
    pipe = Pipeline(
        [
            ("encode", SchemaEncoder()),
            (
                "clf",
                HistGradientBoostingClassifier(
                    categorical_features=CATEGORICAL_MASK, max_iter=30, random_state=0
                ),
            ),
        ]
    ).fit(X, y)
    ref = np.asarray(reference_codes(codes))
    scorer = compile_pipeline(pipe, ref)
    assert isinstance(scorer, PipelineScorer)
    proba, excess = scorer.predict(codes[:40])
    np.testing.assert_allclose(proba, pipe.predict_proba(X.iloc[:40])[:, 1], atol=1e-12)
    assert (excess >= 0).all()
    # the reference applicant itself has nothing to explain
    _, ref_excess = scorer.predict(ref[np.newaxis, :])
    np.testing.assert_array_equal(ref_excess, 0.0)


def test_tree_pipeline_needs_a_reference(data: tuple) -> None:
    X, y, _ = data
    pipe = Pipeline(
        [
            ("encode", SchemaEncoder()),
            ("clf", HistGradientBoostingClassifier(categorical_features=CATEGORICAL_MASK)),
        ]
    ).fit(X, y)
    with pytest.raises(ValueError, match="reference"):
        compile_pipeline(pipe)
