"""How good a probability of default is for lending: ranking, calibration and money.

Everything here is a pure function of outcomes (1 = bad) and predicted P(bad), so training,
tests and reports compute each figure exactly one way.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from credit_risk.policy import COSTS, CostMatrix

DISTRIBUTION_BINS: Final = 10
"""Deciles: the usual resolution of a population stability index in credit scoring."""


def expected_cost(
    y: npt.ArrayLike, p_bad: npt.ArrayLike, threshold: float, costs: CostMatrix = COSTS
) -> float:
    """Mean cost per applicant when everyone with P(bad) > threshold is declined."""
    return decision_cost(y, np.asarray(p_bad, dtype=np.float64) > threshold, costs)


def decision_cost(y: npt.ArrayLike, decline: npt.ArrayLike, costs: CostMatrix = COSTS) -> float:
    """Mean cost per applicant of given approve/decline decisions (True = declined)."""
    outcome = np.asarray(y).astype(bool)
    declined = np.asarray(decline).astype(bool)
    bad_approved = np.count_nonzero(outcome & ~declined)
    good_declined = np.count_nonzero(~outcome & declined)
    total = costs.bad_approved * bad_approved + costs.good_declined * good_declined
    return float(total / len(outcome))


def choose_threshold(y: npt.ArrayLike, p_bad: npt.ArrayLike, costs: CostMatrix = COSTS) -> float:
    """The P(bad) cut-off with the least expected cost on (out-of-fold) predictions.

    Candidates are the midpoints between consecutive distinct predictions (and the two ends),
    so the cut-off never sits on a training prediction. Ties go to the lowest cut-off: with a
    bad loan costing five times a lost good one, the cautious side of a tie is the cheap one.
    """
    outcome = np.asarray(y).astype(bool)
    p = np.asarray(p_bad, dtype=np.float64)
    if outcome.shape != p.shape or p.ndim != 1 or len(p) == 0:
        msg = "choose_threshold needs two equally long, non-empty 1-d arrays"
        raise ValueError(msg)
    values = np.unique(p)
    candidates = np.concatenate(([0.0], (values[:-1] + values[1:]) / 2, [1.0]))
    # cost at each candidate t, vectorised: bads with p <= t are approved, goods with p > t
    # are declined
    bad_sorted = np.sort(p[outcome])
    good_sorted = np.sort(p[~outcome])
    bads_approved = np.searchsorted(bad_sorted, candidates, side="right")
    goods_declined = len(good_sorted) - np.searchsorted(good_sorted, candidates, side="right")
    cost = costs.bad_approved * bads_approved + costs.good_declined * goods_declined
    return float(candidates[int(np.argmin(cost))])


def ks_statistic(y: npt.ArrayLike, p_bad: npt.ArrayLike) -> float:
    """Kolmogorov-Smirnov: the widest gap between the bads' and goods' score distributions."""
    outcome = np.asarray(y).astype(bool)
    p = np.asarray(p_bad, dtype=np.float64)
    grid = np.unique(p)
    cdf_bad = np.searchsorted(np.sort(p[outcome]), grid, side="right") / outcome.sum()
    cdf_good = np.searchsorted(np.sort(p[~outcome]), grid, side="right") / (~outcome).sum()
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def confusion(y: npt.ArrayLike, p_bad: npt.ArrayLike, threshold: float) -> dict[str, int]:
    """Counts at the cut-off, named in lending terms (positive = bad = declined)."""
    outcome = np.asarray(y).astype(bool)
    decline = np.asarray(p_bad, dtype=np.float64) > threshold
    return {
        "bad_declined": int(np.count_nonzero(outcome & decline)),
        "bad_approved": int(np.count_nonzero(outcome & ~decline)),
        "good_declined": int(np.count_nonzero(~outcome & decline)),
        "good_approved": int(np.count_nonzero(~outcome & ~decline)),
    }


def classification_metrics(
    y: npt.ArrayLike, p_bad: npt.ArrayLike, threshold: float, costs: CostMatrix = COSTS
) -> dict[str, Any]:
    """Every figure the report shows for one set of predictions, as plain JSON values."""
    outcome = np.asarray(y).astype(np.int_)
    p = np.clip(np.asarray(p_bad, dtype=np.float64), 0.0, 1.0)
    auc = float(roc_auc_score(outcome, p))
    return {
        "n": len(outcome),
        "bad_rate": float(outcome.mean()),
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(outcome, p),
        "brier": float(brier_score_loss(outcome, p)),
        "log_loss": float(log_loss(outcome, p, labels=[0, 1])),
        "threshold": float(threshold),
        "expected_cost": expected_cost(outcome, p, threshold, costs),
        "expected_cost_at_bayes_threshold": expected_cost(outcome, p, costs.bayes_threshold, costs),
        "approval_rate": float(np.mean(p <= threshold)),
        # what the model buys: the cost of the two policies that need no model at all
        "expected_cost_decline_all": decision_cost(outcome, np.ones(len(outcome), bool), costs),
        "expected_cost_approve_all": decision_cost(outcome, np.zeros(len(outcome), bool), costs),
        "confusion": confusion(outcome, p, threshold),
    }


def distribution_summary(values: npt.ArrayLike, n_bins: int = DISTRIBUTION_BINS) -> dict[str, Any]:
    """Quantile cut points and the share of values per bin, for a later drift check.

    Bins follow `np.searchsorted(edges, x, side="right")`, as the scorecard bins do; repeated
    quantiles (small integer features) collapse, so a feature may have fewer bins than asked.
    """
    x = np.asarray(values, dtype=np.float64)
    inner = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1], method="higher")
    edges = np.unique(inner[inner > x.min()])
    idx = np.searchsorted(edges, x, side="right")
    proportions = np.bincount(idx, minlength=len(edges) + 1) / len(x)
    return {
        "edges": [float(e) for e in edges],
        "proportions": [round(float(q), 6) for q in proportions],
    }


def category_shares(codes: npt.ArrayLike, categories: tuple[str, ...]) -> dict[str, float]:
    """Share of rows per category (codes are indexes into `categories`)."""
    idx = np.asarray(codes, dtype=np.float64).astype(np.intp)
    counts = np.bincount(idx, minlength=len(categories))
    return {cat: round(float(c / len(idx)), 6) for cat, c in zip(categories, counts, strict=True)}


def mean_and_spread(values: list[float]) -> dict[str, float]:
    """Mean and (population) standard deviation of per-repeat figures."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std()), "n": len(array)}
