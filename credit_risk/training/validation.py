"""Cross-validation: the model search on the training split and the quality protocol.

Every figure comes from out-of-fold predictions, on fixed seeds, so the same data and seed
give the same ranking and the same protocol figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from credit_risk.arrays import FloatArray, IntArray
from credit_risk.policy import COSTS
from credit_risk.training import Family
from credit_risk.training.estimators import CV_FOLDS, build_pipeline
from credit_risk.training.evaluation import (
    choose_threshold,
    decision_cost,
    expected_cost,
    mean_and_spread,
)


def out_of_fold(
    family: str,
    params: dict[str, float],
    X: FloatArray,  # noqa: N803
    y: IntArray,
    *,
    folds: int,
    seed: int,
) -> FloatArray:
    """P(bad) for every row from a model that never saw that row (one stratified k-fold)."""
    oof = np.empty(len(y), dtype=np.float64)
    template = build_pipeline(family, params, seed)
    for train_idx, val_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        model = clone(template).fit(X[train_idx], y[train_idx])
        oof[val_idx] = model.predict_proba(X[val_idx])[:, 1]
    return oof


@dataclass
class CandidateScore:
    """One grid point's cross-validated ranking quality on the training split."""

    family: Family
    params: dict[str, float]
    auc_per_repeat: list[float]
    oof: list[FloatArray] = field(repr=False)

    @property
    def auc_mean(self) -> float:
        """Mean CV ROC AUC over the repeats."""
        return float(np.mean(self.auc_per_repeat))

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "estimator": self.family,
            "params": self.params,
            "roc_auc": mean_and_spread(self.auc_per_repeat),
        }


def score_candidate(
    family: Family,
    params: dict[str, float],
    X: FloatArray,  # noqa: N803
    y: IntArray,
    *,
    repeats: int,
    seed: int,
) -> CandidateScore:
    """One grid point's out-of-fold predictions and ROC AUC per repeat of stratified k-fold."""
    oofs = [
        out_of_fold(family, params, X, y, folds=CV_FOLDS, seed=seed + r) for r in range(repeats)
    ]
    aucs = [float(roc_auc_score(y, p)) for p in oofs]
    return CandidateScore(family, dict(params), aucs, oofs)


def rank(scores: Sequence[CandidateScore]) -> list[CandidateScore]:
    """Best CV ROC AUC first."""
    # stable sort: on an exact tie the earlier (simpler, linear) candidate wins
    return sorted(scores, key=lambda s: -s.auc_mean)


def protocol(
    family: str,
    params: dict[str, float],
    X: FloatArray,  # noqa: N803
    y: IntArray,
    *,
    repeats: int,
    inner_folds: int | None,
    seed: int,
) -> dict[str, Any]:
    """The quality target's protocol: repeated stratified 5-fold CV, OOF pooled per repeat.

    Expected cost is given at the policy's fixed Bayes cut-off (how the quality target is
    stated) and, with `inner_folds`, at a cut-off chosen the way training chooses it: on
    inner out-of-fold predictions of each outer training part (nested, so never on the fold
    it is applied to).
    """
    aucs: list[float] = []
    costs_fixed: list[float] = []
    costs_nested: list[float] = []
    template = build_pipeline(family, params, seed)
    for r in range(repeats):
        oof = np.empty(len(y), dtype=np.float64)
        decline = np.empty(len(y), dtype=bool)
        outer = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed + r)
        for train_idx, val_idx in outer.split(X, y):
            model = clone(template).fit(X[train_idx], y[train_idx])
            oof[val_idx] = model.predict_proba(X[val_idx])[:, 1]
            if inner_folds:
                inner = out_of_fold(
                    family, params, X[train_idx], y[train_idx], folds=inner_folds, seed=seed + r
                )
                decline[val_idx] = oof[val_idx] > choose_threshold(y[train_idx], inner)
        aucs.append(float(roc_auc_score(y, oof)))
        costs_fixed.append(expected_cost(y, oof, COSTS.bayes_threshold))
        if inner_folds:
            costs_nested.append(decision_cost(y, decline))
    result: dict[str, Any] = {
        "estimator": family,
        "params": dict(params),
        "roc_auc": mean_and_spread(aucs),
        "expected_cost_at_bayes_threshold": mean_and_spread(costs_fixed),
        "per_repeat": {"roc_auc": aucs, "expected_cost_at_bayes_threshold": costs_fixed},
    }
    if inner_folds:
        result["expected_cost_nested_threshold"] = mean_and_spread(costs_nested)
        result["per_repeat"]["expected_cost_nested_threshold"] = costs_nested
    return result


def seed_sweep(
    family: str,
    params: dict[str, float],
    X: FloatArray,  # noqa: N803
    y: IntArray,
    *,
    runs: int,
    repeats: int,
    seed: int,
) -> dict[str, Any]:
    """The protocol re-run on `runs` further seed sets: how much its mean moves by seed alone.

    The fold seeds follow on from the main protocol's (`seed + repeats` onwards), so no
    repeat is shared with it.
    """
    result = protocol(
        family, params, X, y, repeats=runs * repeats, inner_folds=None, seed=seed + repeats
    )
    summary: dict[str, Any] = {
        "description": f"the protocol ({repeats} repeats) re-run with {runs} other seed sets",
        "runs": runs,
    }
    for name, values in result["per_repeat"].items():
        run_means = np.asarray(values, dtype=np.float64).reshape(runs, repeats).mean(axis=1)
        summary[name] = {
            "mean": float(run_means.mean()),
            "min": float(run_means.min()),
            "max": float(run_means.max()),
        }
    return summary
