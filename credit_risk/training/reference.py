"""What serving keeps from the training data: the drift reference and a typical applicant."""

from __future__ import annotations

from typing import Any

import numpy as np

from credit_risk.arrays import FloatArray
from credit_risk.encoding import CATEGORICAL_MASK
from credit_risk.policy import ScoreScaling
from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training.evaluation import category_shares, distribution_summary


def training_distribution(
    X_train: FloatArray,  # noqa: N803
    p_train: FloatArray,
    scaling: ScoreScaling,
) -> dict[str, Any]:
    """Deciles of the training scores and features, for the drift monitor's reference."""
    numeric = {}
    categorical = {}
    for j, name in enumerate(FEATURES):
        if name in CATEGORIES:
            categorical[name] = category_shares(X_train[:, j], CATEGORIES[name])
        else:
            numeric[name] = distribution_summary(X_train[:, j])
    return {
        "rows": len(p_train),
        "binning": "np.searchsorted(edges, x, side='right'); proportions of training rows",
        "score": distribution_summary(scaling.score(p_train)),
        "probability_of_default": distribution_summary(p_train),
        "numeric": numeric,
        "categorical": categorical,
    }


def reference_codes(X_train: FloatArray) -> list[float]:  # noqa: N803
    """A typical applicant (mode of each category, median of each number) in code form.

    Serving measures a non-linear model's reason codes against it.
    """
    ref = []
    for j in range(X_train.shape[1]):
        column = X_train[:, j]
        if CATEGORICAL_MASK[j]:
            values, counts = np.unique(column, return_counts=True)
            ref.append(float(values[np.argmax(counts)]))
        else:
            ref.append(float(np.median(column)))
    return ref
