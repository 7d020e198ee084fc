"""The steps of a training run, each a plain function of what the steps before it produced.

load -> split -> candidates -> select -> evaluate -> gates -> assemble -> save -> report

`run.train_and_save` calls them in this order; the Prefect flow (`flow.py`) wraps each in a
task, the candidates one grid point per task (`validation.score_candidate`). So `python
train.py` and the flow train, gate, save and report the same way. Everything runs on fixed
seeds: the same data and seed give the same model and figures.

1. split off a stratified 20 % held-out set, untouched until the final evaluation;
2. search a small grid per estimator family by stratified 5-fold CV ROC AUC on the rest;
3. choose the P(bad) cut-off that minimises expected cost on the winner's out-of-fold
   predictions (never on the held-out set);
4. fit the winner on the training split and evaluate it once on the held-out set, then
   measure its configuration under the quality-target protocol (5 x repeated stratified
   5-fold CV over all rows, out-of-fold predictions pooled per repeat);
5. judge it by the quality gates, the champion gate included (`gates`, `champion`);
6. save pipeline + metadata into the BentoML model store and write the report.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from credit_risk import model_store
from credit_risk.arrays import FloatArray, IntArray
from credit_risk.policy import COSTS, SCALING
from credit_risk.schema import FEATURES, schema_hash
from credit_risk.training import FAMILIES, MODEL_CHOICES, Family
from credit_risk.training import champion as champions
from credit_risk.training import gates as quality
from credit_risk.training.data import DataError, Dataset, load_dataset, protected_attributes
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
from credit_risk.training.fairness import fairness_markdown, fairness_report
from credit_risk.training.gates import GateResult, GateSettings
from credit_risk.training.holdout import Split, held_out_rows
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.reference import reference_codes, training_distribution
from credit_risk.training.report import Curves, render_markdown, write_report
from credit_risk.training.scorecard_table import (
    CSV_NAME,
    MARKDOWN_NAME,
    scorecard_rows,
    to_csv,
    to_markdown,
)
from credit_risk.training.validation import (
    CandidateScore,
    protocol,
    rank,
    score_candidate,
    seed_sweep,
)

Progress = Callable[[str], None]

TARGET_ROC_AUC: Final = 0.79
TARGET_EXPECTED_COST: Final = 0.52
"""The quality target under the protocol (per applicant, at the policy's costs)."""
FAIRNESS_JSON: Final = "fairness.json"
FAIRNESS_MARKDOWN: Final = "fairness.md"


def silent(_message: str) -> None:
    """A progress sink that drops every line."""


@dataclass(frozen=True)
class Plan:
    """What a run searches and how hard: the families, the budget and the seed."""

    families: tuple[Family, ...]
    budget: Budget
    seed: int
    quick: bool

    @classmethod
    def of(cls, model: str, seed: int, *, quick: bool) -> Plan:
        """The plan for a `--model` choice; `quick` is the one-point search tests use."""
        if model not in MODEL_CHOICES:
            msg = f"model must be one of {', '.join(MODEL_CHOICES)}, not {model!r}"
            raise ValueError(msg)
        families: tuple[Family, ...] = FAMILIES if model == "auto" else (model,)
        return cls(families, QUICK_BUDGET if quick else FULL_BUDGET, seed, quick)

    def grid(self) -> list[tuple[Family, dict[str, float]]]:
        """Every grid point the search scores, family by family."""
        return [(f, p) for f in self.families for p in self.budget.grid(f)]


@dataclass(frozen=True)
class Loaded:
    """The validated data, its code array and the protected columns (never model inputs)."""

    dataset: Dataset
    codes: FloatArray
    protected: pd.DataFrame


@dataclass(frozen=True)
class Selection:
    """The least-cost cut-off on the winner's out-of-fold predictions, with its CV figures."""

    threshold: float
    cv: dict[str, Any]


@dataclass(frozen=True)
class Evaluation:
    """The winner fitted on the training split and its held-out and protocol figures."""

    pipeline: Pipeline
    p_test: FloatArray
    p_train: FloatArray
    held_out: dict[str, Any]
    protocol: dict[str, Any]


@dataclass(frozen=True)
class Verdicts:
    """Every gate's verdict and what the gates rest on (fairness, the champion comparison)."""

    gates: list[GateResult]
    settings: GateSettings
    fairness: dict[str, Any]
    champion: champions.Comparison

    def enforce(self) -> None:
        """Raise GateFailedError naming every failed blocking gate: nothing may be saved."""
        quality.check(self.gates)

    def comparison(self) -> dict[str, Any]:
        """The champion gate's figures and its verdict, as the report and metadata keep them."""
        (gate,) = [g for g in self.gates if g.name == "champion"]
        figures = self.champion.as_dict(self.settings.champion_confidence)
        return figures | {"verdict": gate.status}

    def as_report(self) -> dict[str, Any]:
        """The verdicts as the report shows them."""
        return {
            "gate_settings": self.settings.as_dict(),
            "gates": [g.as_dict() for g in self.gates],
            "champion_comparison": self.comparison(),
            "fairness": self.fairness,
        }


@dataclass
class TrainingResult:
    """Everything a run produced: the fitted pipeline, its metadata and the report's data."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    labels: dict[str, str]
    report: dict[str, Any]
    verdicts: Verdicts
    curves: Curves = field(repr=False)
    check_codes: FloatArray = field(repr=False)
    """Held-out rows saved with a compiled scorecard to prove it equal to the pipeline."""
    scorecard: list[dict[str, Any]] = field(repr=False)
    """The points table of a WoE scorecard (empty for other models)."""


def load(data_path: Path | str, *, say: Progress = silent) -> Loaded:
    """The validated data set, its code array and protected columns; refuses too few rows."""
    dataset = load_dataset(Path(data_path))
    _check_enough_rows(dataset.path, dataset.y)
    bad = int(dataset.y.sum())
    say(f"data: {len(dataset.y)} applicants, {bad} bad, sha256 {dataset.sha256[:12]}")
    return Loaded(dataset, encode_frame(dataset.X), protected_attributes(dataset.path))


def candidates(plan: Plan, data: Split, *, say: Progress = silent) -> list[CandidateScore]:
    """Every grid point's CV ROC AUC on the training split, best first."""
    jobs = plan.grid()
    say(
        f"search: {len(jobs)} candidates ({', '.join(plan.families)}) on {len(data.y_train)} "
        f"training rows, {plan.budget.search_repeats} x stratified {CV_FOLDS}-fold CV"
    )
    started = time.perf_counter()
    scores = []
    for i, (family, params) in enumerate(jobs, start=1):
        score = score_candidate(
            family,
            params,
            data.X_train,
            data.y_train,
            repeats=plan.budget.search_repeats,
            seed=plan.seed,
        )
        scores.append(score)
        say(
            f"  {i}/{len(jobs)} {family} {format_params(params)}: CV ROC AUC "
            f"{score.auc_mean:.4f} ({time.perf_counter() - started:.1f} s)"
        )
    return rank(scores)


def select(ranked: list[CandidateScore], y_train: IntArray, *, say: Progress = silent) -> Selection:
    """The winner's least-cost cut-off on its out-of-fold predictions, with its CV figures."""
    best = ranked[0]
    say(f"selected: {best.family} {format_params(best.params)}")
    threshold = choose_threshold(np.tile(y_train, len(best.oof)), np.concatenate(best.oof))
    say(f"threshold: P(bad) > {threshold:.4f} (least expected cost out of fold)")
    return Selection(
        threshold,
        {
            "folds": CV_FOLDS,
            "repeats": len(best.oof),
            "rows": len(y_train),
            "roc_auc": mean_and_spread(best.auc_per_repeat),
            "expected_cost_at_threshold": mean_and_spread(
                [expected_cost(y_train, p, threshold) for p in best.oof]
            ),
        },
    )


def evaluate(
    plan: Plan,
    ranked: list[CandidateScore],
    loaded: Loaded,
    data: Split,
    selection: Selection,
    *,
    say: Progress = silent,
) -> Evaluation:
    """The winner fitted on the training split, scored once on the held-out split, then its
    configuration, baselines and seed stability under the repeated-CV protocol."""
    best = ranked[0]
    pipeline = build_pipeline(best.family, best.params, plan.seed).fit(data.X_train, data.y_train)
    p_test = pipeline.predict_proba(data.X_test)[:, 1]
    held_out = classification_metrics(data.y_test, p_test, selection.threshold)
    say(f"held-out: ROC AUC {held_out['roc_auc']:.4f} on {len(data.y_test)} rows")
    figures = _protocol(plan, ranked, loaded.codes, loaded.dataset.y, say)
    p_train = pipeline.predict_proba(data.X_train)[:, 1]
    return Evaluation(pipeline, p_test, p_train, held_out, figures)


def _protocol(
    plan: Plan, ranked: list[CandidateScore], codes: FloatArray, y: IntArray, say: Progress
) -> dict[str, Any]:
    """The protocol figures of the winner, its baselines and its seed stability."""
    best, budget, seed = ranked[0], plan.budget, plan.seed
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


def gates(
    settings: GateSettings,
    plan: Plan,
    loaded: Loaded,
    data: Split,
    *,
    evaluation: Evaluation,
    selection: Selection,
    say: Progress = silent,
) -> Verdicts:
    """Every gate's verdict: quality, the champion (scored as served, on the same held-out
    rows), stability against the champion's training data, and fairness."""
    y_all = loaded.dataset.y
    rows = held_out_rows(y_all, plan.seed)
    if not np.array_equal(y_all[rows], data.y_test):
        msg = "the held-out rows do not match the split: split and held_out_rows disagree"
        raise RuntimeError(msg)
    fairness = fairness_report(
        loaded.protected["sex"].to_numpy()[rows],
        loaded.dataset.X["age_years"].to_numpy()[rows],
        evaluation.p_test <= selection.threshold,
        data.y_test,
    )
    champion = champions.resolve()
    if isinstance(champion, champions.Champion):
        say(f"champion: {champion.tag} ({champion.source}), scored as stored")
        evaluation_rows = champions.EvaluationRows(
            data.X_test, data.y_test, rows, evaluation.p_test, loaded.dataset.sha256, y_all
        )
        comparison = champions.compare(champion, evaluation_rows)
    else:
        comparison = champion
    distribution = comparison.training_distribution
    results = quality.evaluate(
        settings,
        protocol_auc=float(evaluation.protocol["roc_auc"]["mean"]),
        champion=comparison,
        held_out=evaluation.held_out,
        mean_p_test=float(evaluation.p_test.mean()),
        psi_by_feature=quality.feature_psi(distribution, data.X_train) if distribution else None,
        fairness=fairness,
    )
    for gate in results:
        say(gate.line())
    return Verdicts(results, settings, fairness, comparison)


def assemble(
    plan: Plan,
    loaded: Loaded,
    data: Split,
    ranked: list[CandidateScore],
    *,
    selection: Selection,
    evaluation: Evaluation,
    verdicts: Verdicts,
    elapsed: float,
    gates_skipped: bool,
) -> TrainingResult:
    """The model's metadata (what the store keeps) and the report's data from the steps'."""
    best, pipeline = ranked[0], evaluation.pipeline
    metadata: dict[str, Any] = {
        "threshold": selection.threshold,
        "score_scaling": SCALING.as_metadata(),
        "features": list(FEATURES),
        "schema_hash": schema_hash(),
        "estimator": best.family,
        "estimator_params": _estimator_params(pipeline, best.params),
        "metrics": {"held_out": evaluation.held_out, "cv": selection.cv},
        "cv": evaluation.protocol,
        "model_search": [s.as_dict() for s in ranked],
        "cost_matrix": {"bad_approved": COSTS.bad_approved, "good_declined": COSTS.good_declined},
        "data_sha256": loaded.dataset.sha256,
        "data_rows": {"train": len(data.y_train), "held_out": len(data.y_test)},
        "library_versions": library_versions(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(elapsed, 1),
        "seed": plan.seed,
        "quick": plan.quick,
        "quality_gates": [_gate_record(g) for g in verdicts.gates],
        "quality_gates_skipped": gates_skipped,
        "champion_comparison": verdicts.comparison(),
        "training_distribution": training_distribution(data.X_train, evaluation.p_train, SCALING),
        "reference_codes": reference_codes(data.X_train),
    }
    report = {k: v for k, v in metadata.items() if k != "reference_codes"}
    try:
        points = scorecard_rows(pipeline, data.X_train, data.y_train, SCALING)
    except TypeError:  # a gradient-boosted winner has no points table
        points = []
    return TrainingResult(
        pipeline=pipeline,
        metadata=metadata,
        labels={
            "estimator": best.family,
            "stage": "dev",
            "owner": "credit-risk",
            "quality_gates": "skipped" if gates_skipped else "enforced",
        },
        report=report | verdicts.as_report(),
        verdicts=verdicts,
        curves=Curves(
            y_test=data.y_test,
            p_test=evaluation.p_test,
            y_oof=np.tile(data.y_train, len(best.oof)),
            p_oof=np.concatenate(best.oof),
        ),
        check_codes=data.X_test,
        scorecard=points,
    )


def save(result: TrainingResult) -> str:
    """The model into the BentoML store as a new `credit_risk` version; its tag."""
    tag = model_store.save_model(
        result.pipeline, result.metadata, result.labels, check_codes=result.check_codes
    )
    result.report["tag"] = str(tag)
    return str(tag)


def report(result: TrainingResult, report_dir: Path) -> list[Path]:
    """The training report (JSON, PNG, markdown), the scorecard table and the fairness report."""
    paths = write_report(result.report, result.curves, report_dir)
    outputs = {
        "training.md": render_markdown(result.report),
        FAIRNESS_JSON: json.dumps(result.verdicts.fairness, indent=2) + "\n",
        FAIRNESS_MARKDOWN: fairness_markdown(result.verdicts.fairness),
    }
    if result.scorecard:
        outputs[CSV_NAME] = to_csv(result.scorecard)
        outputs[MARKDOWN_NAME] = to_markdown(result.scorecard)
    for name, text in outputs.items():
        (report_dir / name).write_text(text)
        paths.append(report_dir / name)
    return paths


def library_versions() -> dict[str, str]:
    """Versions that decide whether the pickled pipeline loads and scores the same."""
    names = ("scikit-learn", "numpy", "pandas", "bentoml", "pydantic", "joblib", "scipy")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def _gate_record(gate: GateResult) -> dict[str, Any]:
    """A gate's verdict as the model's metadata keeps it."""
    return {k: gate.as_dict()[k] for k in ("name", "figure", "bound", "status", "description")}


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
