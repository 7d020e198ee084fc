"""DeLong's test against its definition, scikit-learn's AUC and a paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from credit_risk.training.roc_comparison import delong


def _two_models(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes and two correlated scores, one stronger, the weaker one rounded (ties)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    strong = 1.0 * y + rng.normal(size=n)
    weak = np.round(0.3 * strong + rng.normal(size=n), 1)
    return y, strong, weak


def _by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong's standard error from the pairwise kernel psi, O(n^2)."""
    bad, good = y == 1, y == 0
    components = []
    for p in (a, b):
        psi = (p[bad][:, None] > p[good][None, :]) + 0.5 * (p[bad][:, None] == p[good][None, :])
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov([components[0][0], components[1][0]])
    s01 = np.cov([components[0][1], components[1][1]])
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / bad.sum()
    var += (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / good.sum()
    return float(np.sqrt(var))


def test_aucs_and_standard_error_match_the_definition() -> None:
    y, strong, weak = _two_models()
    result = delong(y, strong, weak)
    assert result.auc_a == pytest.approx(roc_auc_score(y, strong), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(y, weak), abs=1e-12)
    assert result.std_error == pytest.approx(_by_definition(y, strong, weak), rel=1e-9)
    assert (result.bad, result.good) == (int(y.sum()), int(len(y) - y.sum()))


def test_standard_error_agrees_with_a_paired_bootstrap() -> None:
    y, strong, weak = _two_models(n=400, seed=1)
    rng = np.random.default_rng(2)
    differences = []
    for _ in range(2000):
        rows = rng.integers(0, len(y), len(y))
        differences.append(
            roc_auc_score(y[rows], strong[rows]) - roc_auc_score(y[rows], weak[rows])
        )
    assert delong(y, strong, weak).std_error == pytest.approx(np.std(differences), rel=0.1)


def test_interval_and_bound_at_a_confidence() -> None:
    y, strong, weak = _two_models()
    result = delong(y, weak, strong)  # a = the weaker model: a negative difference
    low, high = result.interval(0.90)
    assert low < result.difference < high < 0
    assert high == pytest.approx(result.upper_bound(0.95))
    assert high - low == pytest.approx(2 * norm.ppf(0.95) * result.std_error)
    # p-value of "a is no more than 0.01 worse": below 5 % exactly when the bound is below -0.01
    assert (result.p_below(0.01) < 0.05) == (result.upper_bound(0.95) < -0.01)


def test_identical_scores_differ_by_nothing_with_certainty() -> None:
    y, strong, _ = _two_models()
    result = delong(y, strong, strong.copy())
    assert result.difference == 0.0
    assert result.std_error == 0.0
    assert result.interval(0.9) == (0.0, 0.0)
    assert result.p_below(0.01) == 1.0


def test_refuses_too_few_rows_of_an_outcome() -> None:
    with pytest.raises(ValueError, match="two bad and two good rows at least, not 1 and 3"):
        delong([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], [0.8, 0.1, 0.2, 0.3])
