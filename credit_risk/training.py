"""Fit, select, evaluate and save the credit-risk pipeline.

Steps, all on fixed seeds so the same data and seed give the same model and figures:

1. split off a stratified 20 % held-out set, untouched until the final evaluation;
2. search a small grid per estimator family by stratified 5-fold CV ROC AUC on the rest;
3. choose the P(bad) cut-off that minimises expected cost on the winner's out-of-fold
   predictions (never on the held-out set);
4. fit the winner on the training split and evaluate it once on the held-out set;
5. measure the winning configuration under the quality-target protocol (5 x repeated
   stratified 5-fold CV over all rows, out-of-fold predictions pooled per repeat);
6. save pipeline + metadata into the BentoML model store and write the report.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from credit_risk import registry, report
from credit_risk.data import DEFAULT_DATA_PATH, DataError, load_dataset
from credit_risk.evaluation import (
    COSTS,
    category_shares,
    choose_threshold,
    classification_metrics,
    decision_cost,
    distribution_summary,
    expected_cost,
    mean_and_spread,
)
from credit_risk.features import CATEGORICAL_MASK
from credit_risk.preprocessing import SchemaEncoder, WoEEncoder, encode_frame
from credit_risk.schema import CATEGORIES, FEATURES, schema_hash
from credit_risk.scoring import ScoreScaling

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
Family = Literal["logreg", "hgb"]
ModelChoice = Literal["auto", "logreg", "hgb"]
Progress = Callable[[str], None]

DEFAULT_SEED: Final = 42
TEST_FRACTION: Final = 0.2
"""Held-out share (the issue's stratified 20 % split)."""
CV_FOLDS: Final = 5
FAMILIES: Final[tuple[Family, ...]] = ("logreg", "hgb")
MODEL_CHOICES: Final[tuple[ModelChoice, ...]] = ("auto", *FAMILIES)
DEFAULT_REPORT_DIR: Final = Path(__file__).resolve().parent.parent / "reports"

TARGET_ROC_AUC: Final = 0.79
TARGET_EXPECTED_COST: Final = 0.52
"""The issue's quality target under the protocol (per applicant, bad approved = 5)."""

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


def search(
    X: FloatArray,  # noqa: N803
    y: IntArray,
    *,
    families: Sequence[Family],
    budget: Budget,
    seed: int,
    progress: Progress,
) -> list[CandidateScore]:
    """Every grid point of the requested families, best CV ROC AUC first."""
    grids = {"logreg": budget.logreg_grid, "hgb": budget.hgb_grid}
    scores: list[CandidateScore] = []
    for family in families:
        grid = grids[family]
        started = time.perf_counter()
        for i, params in enumerate(grid, start=1):
            oofs = [
                out_of_fold(family, params, X, y, folds=CV_FOLDS, seed=seed + r)
                for r in range(budget.search_repeats)
            ]
            aucs = [float(roc_auc_score(y, p)) for p in oofs]
            scores.append(CandidateScore(family, dict(params), aucs, oofs))
            progress(
                f"  {family} {i}/{len(grid)} {_fmt_params(params)}: CV ROC AUC "
                f"{np.mean(aucs):.4f} ({time.perf_counter() - started:.1f} s)"
            )
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

    Expected cost is given at the fixed Bayes cut-off P(bad) > 1/6 (how the issue states the
    target) and, with `inner_folds`, at a cut-off chosen the way training chooses it: on
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


@dataclass
class TrainingResult:
    """Everything a run produced: the fitted pipeline, its metadata and the report's data."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    labels: dict[str, str]
    report: dict[str, Any]
    y_test: IntArray = field(repr=False)
    p_test: FloatArray = field(repr=False)
    y_oof: IntArray = field(repr=False)
    p_oof: FloatArray = field(repr=False)
    check_codes: FloatArray = field(repr=False)
    """Held-out rows saved with a compiled scorecard to prove it equal to the pipeline."""


def train(
    data_path: Path | str = DEFAULT_DATA_PATH,
    model: str = "auto",
    seed: int = DEFAULT_SEED,
    *,
    quick: bool = False,
    progress: Progress | None = None,
) -> TrainingResult:
    """Run steps 1-5 without touching the model store (tests and `train_and_save` use it)."""
    if model not in MODEL_CHOICES:
        msg = f"model must be one of {', '.join(MODEL_CHOICES)}, not {model!r}"
        raise ValueError(msg)
    say = progress or _stderr
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    families: tuple[Family, ...] = FAMILIES if model == "auto" else (model,)
    started = time.perf_counter()
    # one BLAS/OpenMP thread: gradient boosting on 1,000 rows is fastest single-threaded (a
    # busy 2-core machine made 2 threads 40x slower), and results cannot depend on scheduling
    with threadpool_limits(limits=1):
        dataset = load_dataset(Path(data_path))
        codes = encode_frame(dataset.X)
        y = dataset.y
        _check_enough_rows(dataset.path, y)
        say(f"data: {len(y)} applicants, {int(y.sum())} bad, sha256 {dataset.sha256[:12]}")
        X_train, X_test, y_train, y_test = train_test_split(  # noqa: N806
            codes, y, test_size=TEST_FRACTION, stratify=y, random_state=seed
        )
        say(
            f"search: {', '.join(families)} on {len(y_train)} training rows, "
            f"{budget.search_repeats} x stratified {CV_FOLDS}-fold CV"
        )
        ranked = search(X_train, y_train, families=families, budget=budget, seed=seed, progress=say)
        best = ranked[0]
        say(f"selected: {best.family} {_fmt_params(best.params)}")

        y_oof = np.tile(y_train, len(best.oof))
        p_oof = np.concatenate(best.oof)
        threshold = choose_threshold(y_oof, p_oof)
        cv_train = {
            "folds": CV_FOLDS,
            "repeats": budget.search_repeats,
            "rows": len(y_train),
            "roc_auc": mean_and_spread(best.auc_per_repeat),
            "expected_cost_at_threshold": mean_and_spread(
                [expected_cost(y_train, p, threshold) for p in best.oof]
            ),
        }
        say(f"threshold: P(bad) > {threshold:.4f} (least expected cost out of fold)")

        pipeline = build_pipeline(best.family, best.params, seed).fit(X_train, y_train)
        p_test = pipeline.predict_proba(X_test)[:, 1]
        held_out = classification_metrics(y_test, p_test, threshold)
        say(f"held-out: ROC AUC {held_out['roc_auc']:.4f} on {len(y_test)} rows")

        say(
            f"protocol: {budget.protocol_repeats} x stratified {CV_FOLDS}-fold CV on all "
            f"{len(y)} rows (nested cut-off, {budget.inner_folds}-fold inner CV)"
        )
        cv_protocol = protocol(
            best.family,
            best.params,
            codes,
            y,
            repeats=budget.protocol_repeats,
            inner_folds=budget.inner_folds,
            seed=seed,
        )
        baselines = []
        if budget.baselines:
            others = [s for s in ranked if s.family != best.family][:1]
            for family, params in [("onehot", {"C": 1.0}), *((o.family, o.params) for o in others)]:
                say(f"baseline under the protocol: {family} {_fmt_params(params)}")
                baselines.append(
                    protocol(
                        family,
                        params,
                        codes,
                        y,
                        repeats=budget.protocol_repeats,
                        inner_folds=None,
                        seed=seed,
                    )
                )
        cv_protocol["baselines"] = baselines
        if budget.sweep_runs:
            say(f"protocol stability: {budget.sweep_runs} more seed sets")
            cv_protocol["seed_sweep"] = seed_sweep(
                best.family,
                best.params,
                codes,
                y,
                runs=budget.sweep_runs,
                repeats=budget.protocol_repeats,
                seed=seed,
            )
        cv_protocol["target"] = {
            "roc_auc_at_least": TARGET_ROC_AUC,
            "expected_cost_at_most": TARGET_EXPECTED_COST,
        }
        cv_protocol["description"] = (
            f"{budget.protocol_repeats} x repeated stratified {CV_FOLDS}-fold CV over all "
            f"{len(y)} rows, out-of-fold predictions pooled per repeat; mean and std over repeats"
        )

        scaling = ScoreScaling()
        p_train = pipeline.predict_proba(X_train)[:, 1]
        elapsed = time.perf_counter() - started

    metadata: dict[str, Any] = {
        "threshold": threshold,
        "score_scaling": scaling.as_metadata(),
        "features": list(FEATURES),
        "schema_hash": schema_hash(),
        "estimator": best.family,
        "estimator_params": _estimator_params(pipeline, best.params),
        "metrics": {"held_out": held_out, "cv": cv_train},
        "cv": cv_protocol,
        "model_search": [s.as_dict() for s in ranked],
        "cost_matrix": {"bad_approved": COSTS.bad_approved, "good_declined": COSTS.good_declined},
        "data_sha256": dataset.sha256,
        "data_rows": {"train": len(y_train), "held_out": len(y_test)},
        "library_versions": library_versions(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(elapsed, 1),
        "seed": seed,
        "quick": quick,
        "training_distribution": training_distribution(X_train, p_train, scaling),
        "reference_codes": reference_codes(X_train),
    }
    labels = {"estimator": best.family, "stage": "dev", "owner": "credit-risk"}
    return TrainingResult(
        pipeline=pipeline,
        metadata=metadata,
        labels=labels,
        report={k: v for k, v in metadata.items() if k != "reference_codes"},
        y_test=y_test,
        p_test=p_test,
        y_oof=y_oof,
        p_oof=p_oof,
        check_codes=X_test,
    )


def train_and_save(
    data_path: Path | str = DEFAULT_DATA_PATH,
    model: str = "auto",
    seed: int = DEFAULT_SEED,
    report_dir: Path | str | None = DEFAULT_REPORT_DIR,
    *,
    quick: bool = False,
    quiet: bool = False,
) -> Any:
    """Train, save into the BentoML store, write the report; returns the new `bentoml.Tag`.

    `quick=True` searches one configuration per family with single CV repeats: a real, small
    model in seconds for test fixtures. Progress goes to stderr, the report table to stdout.
    """
    say: Progress = (lambda _msg: None) if quiet else _stderr
    result = train(data_path, model, seed, quick=quick, progress=say)
    tag = registry.save_model(
        result.pipeline, result.metadata, result.labels, check_codes=result.check_codes
    )
    say(f"saved: {tag}")
    result.report["tag"] = str(tag)
    if report_dir is not None:
        paths = report.write_report(result, Path(report_dir))
        say("report: " + ", ".join(str(p) for p in paths))
    if not quiet:
        print(report.render_table(result.report), flush=True)
    return tag


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


def library_versions() -> dict[str, str]:
    """Versions that decide whether the pickled pipeline loads and scores the same."""
    names = ("scikit-learn", "numpy", "pandas", "bentoml", "pydantic", "joblib", "scipy")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def _estimator_params(pipeline: Pipeline, searched: dict[str, float]) -> dict[str, Any]:
    params: dict[str, Any] = {"searched": dict(searched)}
    for name, step in pipeline.steps[1:]:
        params[name] = {k: _plain(v) for k, v in sorted(step.get_params(deep=False).items())}
    return params


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for a scikit-learn parameter value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str):
        return value
    return repr(value)  # None included: the model store rejects null metadata values


def _check_enough_rows(path: Path, y: IntArray) -> None:
    fewest = min(int(y.sum()), int(len(y) - y.sum()))
    # the held-out split and both CV levels must each leave every fold with both outcomes
    needed = 2 * CV_FOLDS * CV_FOLDS
    if fewest < needed:
        msg = (
            f"{path}: {fewest} rows of the rarer outcome; training needs at least {needed} "
            "good and bad applicants each"
        )
        raise DataError(msg)


def _fmt_params(params: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in params.items())


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
