"""The estimator families training weighs, their search grids and the pipelines they build.

The step names (`encode`, `woe`, `clf`) are the serving contract: `credit_risk.compiled` reads
a fitted `encode -> woe -> clf` pipeline as a scorecard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from credit_risk.encoding import CATEGORICAL_MASK
from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training import DEFAULT_SEED, FAMILIES
from credit_risk.training.preprocessing import SchemaEncoder, WoEEncoder

CV_FOLDS: Final = 5

LOGREG_MAX_ITER: Final = 1000
"""lbfgs converges in well under 100 iterations on 18 WoE columns; 1000 is a safe ceiling."""
HGB_MIN_SAMPLES_LEAF: Final = 20
"""scikit-learn's default; with ~640 rows per CV fit it keeps leaves above 3 % of the data."""
HGB_MONOTONE: Final = {"duration_months": 1}
"""Longer loans are riskier (the strongest numeric effect in the data): forbid the reverse."""


@dataclass(frozen=True)
class Budget:
    """How much searching and re-sampling a run does: full for releases, quick for tests."""

    search_repeats: int
    protocol_repeats: int
    inner_folds: int
    logreg_grid: tuple[dict[str, float], ...]
    hgb_grid: tuple[dict[str, float], ...]
    baselines: bool
    sweep_runs: int

    def grid(self, family: str) -> tuple[dict[str, float], ...]:
        """The grid points this budget searches for a family."""
        return {"logreg": self.logreg_grid, "hgb": self.hgb_grid}[family]


FULL_BUDGET: Final = Budget(
    search_repeats=2,
    protocol_repeats=5,
    inner_folds=5,
    logreg_grid=tuple(
        {"max_bins": b, "smoothing": s, "C": c}
        for b in (6, 8, 10)
        for s in (2.0, 8.0)
        for c in (0.1, 0.3, 1.0)
    ),
    hgb_grid=tuple(
        {"learning_rate": 0.05, "max_leaf_nodes": leaves, "max_iter": it, "l2_regularization": 1.0}
        for leaves in (4, 8)
        for it in (100, 200)
    ),
    baselines=True,
    sweep_runs=10,
)
QUICK_BUDGET: Final = Budget(
    search_repeats=1,
    protocol_repeats=1,
    inner_folds=3,
    logreg_grid=({"max_bins": 8, "smoothing": 8.0, "C": 0.3},),
    hgb_grid=(
        {"learning_rate": 0.1, "max_leaf_nodes": 4, "max_iter": 30, "l2_regularization": 1.0},
    ),
    baselines=False,
    sweep_runs=0,
)


def build_pipeline(family: str, params: dict[str, float], seed: int = DEFAULT_SEED) -> Pipeline:
    """The served pipeline shape for a family (step names are the serving contract)."""
    if family == "logreg":
        return Pipeline(
            [
                ("encode", SchemaEncoder()),
                (
                    "woe",
                    WoEEncoder(max_bins=int(params["max_bins"]), smoothing=params["smoothing"]),
                ),
                ("clf", LogisticRegression(C=params["C"], max_iter=LOGREG_MAX_ITER)),
            ]
        )
    if family == "hgb":
        return Pipeline(
            [
                ("encode", SchemaEncoder()),
                (
                    "clf",
                    HistGradientBoostingClassifier(
                        categorical_features=CATEGORICAL_MASK,
                        monotonic_cst=[HGB_MONOTONE.get(f, 0) for f in FEATURES],
                        learning_rate=params["learning_rate"],
                        max_leaf_nodes=int(params["max_leaf_nodes"]),
                        max_iter=int(params["max_iter"]),
                        l2_regularization=params["l2_regularization"],
                        min_samples_leaf=HGB_MIN_SAMPLES_LEAF,
                        early_stopping=False,
                        random_state=seed,
                    ),
                ),
            ]
        )
    if family == "onehot":
        categorical = [j for j, f in enumerate(FEATURES) if f in CATEGORIES]
        numeric = [j for j, f in enumerate(FEATURES) if f not in CATEGORIES]
        return Pipeline(
            [
                ("encode", SchemaEncoder()),
                (
                    "onehot",
                    ColumnTransformer(
                        [
                            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
                            ("numbers", StandardScaler(), numeric),
                        ]
                    ),
                ),
                ("clf", LogisticRegression(C=params.get("C", 1.0), max_iter=LOGREG_MAX_ITER)),
            ]
        )
    msg = f"unknown estimator family {family!r} (expected one of {', '.join(FAMILIES)})"
    raise ValueError(msg)


def format_params(params: dict[str, float]) -> str:
    """A grid point as `name=value` pairs, for progress lines."""
    return " ".join(f"{k}={v:g}" for k, v in params.items())
