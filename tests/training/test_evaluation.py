"""Lending metrics: expected cost, the cost-minimising cut-off, KS and drift summaries."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from credit_risk.policy import COSTS, CostMatrix
from credit_risk.training.evaluation import (
    category_shares,
    choose_threshold,
    classification_metrics,
    confusion,
    decision_cost,
    distribution_summary,
    expected_cost,
    ks_statistic,
)


def test_bayes_threshold_of_the_data_sets_cost_matrix_is_one_sixth() -> None:
    assert COSTS.bad_approved == 5.0
    assert COSTS.good_declined == 1.0
    assert math.isclose(COSTS.bayes_threshold, 1 / 6)
    assert math.isclose(CostMatrix(bad_approved=3, good_declined=1).bayes_threshold, 0.25)


def test_expected_cost_counts_each_mistake_at_its_price() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.3])
    # threshold 0.5: bad approved = 1 (p=0.1), good declined = 1 (p=0.8) -> (5 + 1) / 5
    assert expected_cost(y, p, 0.5) == pytest.approx(6 / 5)
    # declining everyone costs one per good applicant
    assert expected_cost(y, p, 0.0) == pytest.approx(3 / 5)
    # approving everyone costs five per bad applicant
    assert expected_cost(y, p, 1.0) == pytest.approx(10 / 5)
    assert decision_cost(y, p > 0.5) == expected_cost(y, p, 0.5)


def test_decline_is_strictly_above_the_threshold() -> None:
    y = np.array([1])
    assert expected_cost(y, np.array([0.3]), 0.3) == 5.0  # p == t is approved
    assert expected_cost(y, np.array([0.3]), 0.29) == 0.0


def test_choose_threshold_finds_the_cheapest_cut() -> None:
    y = np.array([0, 0, 0, 1, 0, 1, 1])
    p = np.array([0.05, 0.10, 0.20, 0.30, 0.40, 0.60, 0.90])
    t = choose_threshold(y, p)
    # every bad (0.3 and up) declined, goods at 0.05-0.2 approved, one good (0.4) declined
    assert 0.20 < t < 0.30
    assert t == pytest.approx(0.25)  # the midpoint, never a training prediction
    assert expected_cost(y, p, t) == pytest.approx(1 / 7)
    grid = np.linspace(0, 1, 1001)
    assert expected_cost(y, p, t) <= min(expected_cost(y, p, g) for g in grid) + 1e-12


def test_choose_threshold_is_cautious_on_ties() -> None:
    # declining everyone (five goods lost, cost 5) ties with approving everyone (one bad
    # approved, cost 5): the lower cut-off wins
    y = np.array([1, 0, 0, 0, 0, 0])
    p = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    t = choose_threshold(y, p)
    assert expected_cost(y, p, t) == pytest.approx(5 / 6)
    assert t < 0.5


def test_choose_threshold_rejects_mismatched_input() -> None:
    with pytest.raises(ValueError, match="equally long"):
        choose_threshold(np.array([0, 1]), np.array([0.1]))


def test_ks_is_the_widest_cdf_gap() -> None:
    assert ks_statistic([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert ks_statistic([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert ks_statistic([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.5)


def test_classification_metrics_are_consistent() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    m = classification_metrics(y, p, 0.4)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["gini"] == pytest.approx(2 * m["roc_auc"] - 1)
    assert sum(m["confusion"].values()) == 300
    assert m["confusion"] == confusion(y, p, 0.4)
    assert m["expected_cost"] == pytest.approx(expected_cost(y, p, 0.4))
    assert m["approval_rate"] == pytest.approx(np.mean(p <= 0.4))


def test_classification_metrics_price_the_policies_that_need_no_model() -> None:
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])  # 2 bad, 8 good
    m = classification_metrics(y, np.linspace(0.05, 0.95, 10), 0.5)
    assert m["expected_cost_decline_all"] == pytest.approx(8 * COSTS.good_declined / 10)
    assert m["expected_cost_approve_all"] == pytest.approx(2 * COSTS.bad_approved / 10)


def test_distribution_summary_bins_like_the_scorecard() -> None:
    x = np.arange(100, dtype=float)
    summary = distribution_summary(x)
    edges = np.asarray(summary["edges"])
    assert len(edges) == 9
    assert sum(summary["proportions"]) == pytest.approx(1.0)
    idx = np.searchsorted(edges, x, side="right")
    assert np.bincount(idx).tolist() == [round(q * 100) for q in summary["proportions"]]


def test_distribution_summary_collapses_repeated_quantiles() -> None:
    x = np.array([1, 1, 1, 1, 2, 2, 3, 4], dtype=float)  # a small integer feature
    summary = distribution_summary(x)
    assert summary["edges"] == sorted(set(summary["edges"]))
    assert len(summary["proportions"]) == len(summary["edges"]) + 1
    assert min(summary["proportions"]) > 0
    assert sum(summary["proportions"]) == pytest.approx(1.0)


def test_category_shares() -> None:
    shares = category_shares(np.array([0, 0, 2, 2]), ("a", "b", "c"))
    assert shares == {"a": 0.5, "b": 0.0, "c": 0.5}
