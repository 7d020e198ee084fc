"""One training run: fit, select, evaluate and save the credit-risk pipeline.

Steps, all on fixed seeds so the same data and seed give the same model and figures:

1. split off a stratified 20 % held-out set, untouched until the final evaluation;
2. search a small grid per estimator family by stratified 5-fold CV ROC AUC on the rest;
3. choose the P(bad) cut-off that minimises expected cost on the winner's out-of-fold
   predictions (never on the held-out set);
4. fit the winner on the training split and evaluate it once on the held-out set;
5. measure the winning configuration under the quality-target protocol (5 x repeated
   stratified 5-fold CV over all rows, out-of-fold predictions pooled per repeat);
6. save pipeline + metadata into the BentoML model store and write the report.

Each step is a function of its own, so an orchestrator can run them as separate tasks.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from credit_risk import model_store
from credit_risk.arrays import FloatArray, IntArray
from credit_risk.policy import COSTS, SCALING
from credit_risk.schema import FEATURES, schema_hash
from credit_risk.training import DEFAULT_SEED, FAMILIES, MODEL_CHOICES, Family
from credit_risk.training.data import DEFAULT_DATA_PATH, DataError, Dataset, load_dataset
from credit_risk.training.estimators import (
    CV_FOLDS,
    FULL_BUDGET,
    QUICK_BUDGET,
    Budget,
    build_pipeline,
    format_params,
)
from credit_risk.training.evaluation import (
    choose_threshold,
    classification_metrics,
    expected_cost,
    mean_and_spread,
)
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import reference_codes, training_distribution
from credit_risk.training.report import Curves, render_table, write_report
from credit_risk.training.validation import CandidateScore, protocol, search, seed_sweep

Progress = Callable[[str], None]

TEST_FRACTION: Final = 0.2
"""Held-out share: a stratified 20 % split."""
DEFAULT_REPORT_DIR: Final = Path(__file__).resolve().parents[2] / "reports"

TARGET_ROC_AUC: Final = 0.79
TARGET_EXPECTED_COST: Final = 0.52
"""The quality target under the protocol (per applicant, at the policy's costs)."""


@dataclass(frozen=True)
class Split:
    """The code arrays of the training split and the held-out split."""

    X_train: FloatArray
    X_test: FloatArray
    y_train: IntArray
    y_test: IntArray


@dataclass
class TrainingResult:
    """Everything a run produced: the fitted pipeline, its metadata and the report's data."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    labels: dict[str, str]
    report: dict[str, Any]
    curves: Curves = field(repr=False)
    check_codes: FloatArray = field(repr=False)
    """Held-out rows saved with a compiled scorecard to prove it equal to the pipeline."""


def load(data_path: Path | str) -> tuple[Dataset, FloatArray]:
    """Step 0: the validated data set and its code array; refuses too few rows to train on."""
    dataset = load_dataset(Path(data_path))
    _check_enough_rows(dataset.path, dataset.y)
    return dataset, encode_frame(dataset.X)


def split(codes: FloatArray, y: IntArray, seed: int) -> Split:
    """Step 1: the stratified held-out split."""
    X_train, X_test, y_train, y_test = train_test_split(  # noqa: N806
        codes, y, test_size=TEST_FRACTION, stratify=y, random_state=seed
    )
    return Split(X_train, X_test, y_train, y_test)


def select_threshold(best: CandidateScore, y_train: IntArray) -> tuple[float, dict[str, Any]]:
    """Step 3: the least-cost cut-off on the winner's out-of-fold predictions, with its CV
    figures."""
    threshold = choose_threshold(np.tile(y_train, len(best.oof)), np.concatenate(best.oof))
    cv_train = {
        "folds": CV_FOLDS,
        "repeats": len(best.oof),
        "rows": len(y_train),
        "roc_auc": mean_and_spread(best.auc_per_repeat),
        "expected_cost_at_threshold": mean_and_spread(
            [expected_cost(y_train, p, threshold) for p in best.oof]
        ),
    }
    return threshold, cv_train


def fit_and_hold_out(
    best: CandidateScore, data: Split, threshold: float, seed: int
) -> tuple[Pipeline, FloatArray, dict[str, Any]]:
    """Step 4: the winner fitted on the training split, scored once on the held-out split."""
    pipeline = build_pipeline(best.family, best.params, seed).fit(data.X_train, data.y_train)
    p_test = pipeline.predict_proba(data.X_test)[:, 1]
    return pipeline, p_test, classification_metrics(data.y_test, p_test, threshold)


def measure(
    best: CandidateScore,
    ranked: list[CandidateScore],
    codes: FloatArray,
    y: IntArray,
    *,
    budget: Budget,
    seed: int,
    say: Progress,
) -> dict[str, Any]:
    """Step 5: the protocol figures of the winner, its baselines and its seed stability."""
    say(
        f"protocol: {budget.protocol_repeats} x stratified {CV_FOLDS}-fold CV on all "
        f"{len(y)} rows (nested cut-off, {budget.inner_folds}-fold inner CV)"
    )
    result = protocol(
        best.family,
        best.params,
        codes,
        y,
        seed=seed,
        repeats=budget.protocol_repeats,
        inner_folds=budget.inner_folds,
    )
    result["baselines"] = []
    if budget.baselines:
        others = [s for s in ranked if s.family != best.family][:1]
        for family, params in [("onehot", {"C": 1.0}), *((o.family, o.params) for o in others)]:
            say(f"baseline under the protocol: {family} {format_params(params)}")
            result["baselines"].append(
                protocol(
                    family,
                    params,
                    codes,
                    y,
                    seed=seed,
                    repeats=budget.protocol_repeats,
                    inner_folds=None,
                )
            )
    if budget.sweep_runs:
        say(f"protocol stability: {budget.sweep_runs} more seed sets")
        result["seed_sweep"] = seed_sweep(
            best.family,
            best.params,
            codes,
            y,
            seed=seed,
            runs=budget.sweep_runs,
            repeats=budget.protocol_repeats,
        )
    result["target"] = {
        "roc_auc_at_least": TARGET_ROC_AUC,
        "expected_cost_at_most": TARGET_EXPECTED_COST,
    }
    result["description"] = (
        f"{budget.protocol_repeats} x repeated stratified {CV_FOLDS}-fold CV over all "
        f"{len(y)} rows, out-of-fold predictions pooled per repeat; mean and std over repeats"
    )
    return result


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
        dataset, codes = load(data_path)
        say(
            f"data: {len(dataset.y)} applicants, {int(dataset.y.sum())} bad, sha256 "
            f"{dataset.sha256[:12]}"
        )
        data = split(codes, dataset.y, seed)
        say(
            f"search: {', '.join(families)} on {len(data.y_train)} training rows, "
            f"{budget.search_repeats} x stratified {CV_FOLDS}-fold CV"
        )
        ranked = search(
            data.X_train, data.y_train, families=families, budget=budget, seed=seed, progress=say
        )
        best = ranked[0]
        say(f"selected: {best.family} {format_params(best.params)}")
        threshold, cv_train = select_threshold(best, data.y_train)
        say(f"threshold: P(bad) > {threshold:.4f} (least expected cost out of fold)")
        pipeline, p_test, held_out = fit_and_hold_out(best, data, threshold, seed)
        say(f"held-out: ROC AUC {held_out['roc_auc']:.4f} on {len(data.y_test)} rows")
        cv_protocol = measure(best, ranked, codes, dataset.y, budget=budget, seed=seed, say=say)
        p_train = pipeline.predict_proba(data.X_train)[:, 1]
    return assemble(
        pipeline=pipeline,
        dataset=dataset,
        data=data,
        ranked=ranked,
        threshold=threshold,
        figures={"held_out": held_out, "cv": cv_train, "protocol": cv_protocol},
        predictions={"p_test": p_test, "p_train": p_train},
        seed=seed,
        quick=quick,
        elapsed=time.perf_counter() - started,
    )


def assemble(
    *,
    pipeline: Pipeline,
    dataset: Dataset,
    data: Split,
    ranked: list[CandidateScore],
    threshold: float,
    figures: dict[str, Any],
    predictions: dict[str, FloatArray],
    seed: int,
    quick: bool,
    elapsed: float,
) -> TrainingResult:
    """The model's metadata (what the store keeps) and the report's data from a run's parts."""
    best = ranked[0]
    metadata: dict[str, Any] = {
        "threshold": threshold,
        "score_scaling": SCALING.as_metadata(),
        "features": list(FEATURES),
        "schema_hash": schema_hash(),
        "estimator": best.family,
        "estimator_params": _estimator_params(pipeline, best.params),
        "metrics": {"held_out": figures["held_out"], "cv": figures["cv"]},
        "cv": figures["protocol"],
        "model_search": [s.as_dict() for s in ranked],
        "cost_matrix": {"bad_approved": COSTS.bad_approved, "good_declined": COSTS.good_declined},
        "data_sha256": dataset.sha256,
        "data_rows": {"train": len(data.y_train), "held_out": len(data.y_test)},
        "library_versions": library_versions(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(elapsed, 1),
        "seed": seed,
        "quick": quick,
        "training_distribution": training_distribution(
            data.X_train, predictions["p_train"], SCALING
        ),
        "reference_codes": reference_codes(data.X_train),
    }
    return TrainingResult(
        pipeline=pipeline,
        metadata=metadata,
        labels={"estimator": best.family, "stage": "dev", "owner": "credit-risk"},
        report={k: v for k, v in metadata.items() if k != "reference_codes"},
        curves=Curves(
            y_test=data.y_test,
            p_test=predictions["p_test"],
            y_oof=np.tile(data.y_train, len(best.oof)),
            p_oof=np.concatenate(best.oof),
        ),
        check_codes=data.X_test,
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
    tag = model_store.save_model(
        result.pipeline, result.metadata, result.labels, check_codes=result.check_codes
    )
    say(f"saved: {tag}")
    result.report["tag"] = str(tag)
    if report_dir is not None:
        paths = write_report(result.report, result.curves, Path(report_dir))
        say("report: " + ", ".join(str(p) for p in paths))
    if not quiet:
        print(render_table(result.report), flush=True)
    return tag


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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
