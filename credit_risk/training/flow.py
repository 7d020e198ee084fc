"""Retraining as a Prefect flow, tracked in MLflow, gated before anything is saved.

load -> split -> candidates (mapped, cached) -> select -> evaluate -> gates -> register ->
save -> link -> report. Every step calls the same functions `train_and_save` does
(`credit_risk.training.run`), so the flow and `python train.py` cannot train differently.

Embedded by default: Prefect runs the flow on its temporary local server unless
`PREFECT_API_URL` names a server; MLflow tracks to `mlflow.db` in the working directory
unless `MLFLOW_TRACKING_URI` is set (`credit_risk.training.tracking`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, serve, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.deployments.runner import RunnerDeployment
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from credit_risk import model_store
from credit_risk.arrays import FloatArray, IntArray
from credit_risk.policy import SCALING
from credit_risk.schema import schema_hash
from credit_risk.training import (
    DEFAULT_SEED,
    FAMILIES,
    Family,
    ModelChoice,
    estimators,
    preprocessing,
    validation,
)
from credit_risk.training import gates as quality
from credit_risk.training.data import (
    DEFAULT_DATA_PATH,
    Dataset,
    applicant_records,
    protected_attributes,
)
from credit_risk.training.estimators import FULL_BUDGET, QUICK_BUDGET, Budget
from credit_risk.training.fairness import fairness_markdown, fairness_report
from credit_risk.training.report import render_table, write_report
from credit_risk.training.run import (
    DEFAULT_REPORT_DIR,
    Split,
    TrainingResult,
    assemble,
    fit_and_hold_out,
    library_versions,
    load,
    measure,
    select_threshold,
    split,
)
from credit_risk.training.scorecard_table import (
    CSV_NAME,
    MARKDOWN_NAME,
    scorecard_rows,
    to_csv,
    to_markdown,
)
from credit_risk.training.tracking import EXPERIMENT, REGISTERED_MODEL, Tracker, flat_metrics
from credit_risk.training.validation import CandidateScore, protocol, rank, score_candidate

FLOW_NAME: Final = "credit-risk-training"
DEPLOYMENT_NAME: Final = "monthly"
MONTHLY_CRON: Final = "0 6 1 * *"
"""06:00 on the first day of every month (the scheduler's time zone, UTC by default)."""
CANDIDATE_CACHE: Final = timedelta(days=30)
STORE_RETRIES: Final = 2
"""Store I/O (the MLflow registry, the BentoML store) can fail transiently: try again."""
FAIRNESS_JSON: Final = "fairness.json"
FAIRNESS_MARKDOWN: Final = "fairness.md"
EXAMPLE_ROWS: Final = 5


@dataclass(frozen=True)
class Loaded:
    """The validated data, its code array and the protected columns (never model inputs)."""

    dataset: Dataset
    codes: FloatArray
    protected: pd.DataFrame


@dataclass(frozen=True)
class Evaluation:
    """The winner fitted on the training split and its held-out and protocol figures."""

    pipeline: Pipeline
    p_test: FloatArray
    p_train: FloatArray
    held_out: dict[str, Any]
    protocol: dict[str, Any]


@task(name="load", cache_policy=NO_CACHE)
def load_data(data_path: str) -> Loaded:
    """Read and validate the data (sha256 check included), with its protected columns."""
    dataset, codes = load(data_path)
    get_run_logger().info(
        "data: %d applicants, %d bad, sha256 %s",
        len(dataset.y),
        int(dataset.y.sum()),
        dataset.sha256[:12],
    )
    return Loaded(dataset, codes, protected_attributes(dataset.path))


@task(name="split", cache_policy=NO_CACHE)
def split_data(codes: FloatArray, y: IntArray, seed: int) -> tuple[Split, str]:
    """The held-out split, and a digest of the training part that keys the candidate cache."""
    data = split(codes, y, seed)
    digest = hashlib.sha256(data.X_train.tobytes() + data.y_train.tobytes()).hexdigest()
    return data, digest


def _code_digest() -> str:
    """The source that decides a candidate's figures: a change to it refits every candidate."""
    digest = hashlib.sha256()
    for module in (validation, estimators, preprocessing):
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()


_CANDIDATE_CODE: Final = _code_digest()


def _candidate_key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Same training data, grid point, repeats, seed, code and libraries: same CV figures."""
    key = {k: parameters[k] for k in ("split_sha256", "family", "params", "repeats", "seed")}
    key |= {"code": _CANDIDATE_CODE, "libraries": library_versions()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@task(
    name="candidate",
    task_run_name="candidate-{family}",
    cache_key_fn=_candidate_key,
    cache_expiration=CANDIDATE_CACHE,
    persist_result=True,
)
def candidate(
    family: Family,
    params: dict[str, float],
    *,
    X_train: FloatArray,  # noqa: N803
    y_train: IntArray,
    repeats: int,
    seed: int,
    split_sha256: str,
) -> CandidateScore:
    """One grid point's out-of-fold predictions and CV ROC AUC (`validation.score_candidate`)."""
    del split_sha256  # the cache key's; X_train and y_train are what it digests
    return score_candidate(family, params, X_train, y_train, repeats=repeats, seed=seed)


@task(name="select", cache_policy=NO_CACHE)
def select(ranked: list[CandidateScore], y_train: IntArray) -> tuple[float, dict[str, Any]]:
    """The least-cost threshold on the winner's out-of-fold predictions."""
    threshold, cv_train = select_threshold(ranked[0], y_train)
    get_run_logger().info("threshold: P(bad) > %.4f", threshold)
    return threshold, cv_train


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(
    ranked: list[CandidateScore],
    data: Split,
    *,
    loaded: Loaded,
    threshold: float,
    budget: Budget,
    seed: int,
) -> Evaluation:
    """The winner on the held-out split, then under the repeated-CV protocol."""
    logger = get_run_logger()
    pipeline, p_test, held_out = fit_and_hold_out(ranked[0], data, threshold, seed)
    logger.info("held-out: ROC AUC %.4f on %d rows", held_out["roc_auc"], len(data.y_test))
    figures = measure(
        ranked[0], ranked, loaded.codes, loaded.dataset.y, budget=budget, seed=seed, say=logger.info
    )
    p_train = pipeline.predict_proba(data.X_train)[:, 1]
    return Evaluation(pipeline, p_test, p_train, held_out, figures)


def held_out_index(n: int, y: IntArray, seed: int) -> IntArray:
    """Row numbers of the held-out split: `run.split` applied to the row numbers themselves."""
    rows = split(np.arange(n, dtype=np.float64)[:, np.newaxis], y, seed)
    return rows.X_test[:, 0].astype(np.int_)


@task(name="gates", cache_policy=NO_CACHE)
def gates_task(
    settings: quality.GateSettings,
    tracker: Tracker,
    *,
    loaded: Loaded,
    data: Split,
    evaluation: Evaluation,
    threshold: float,
    budget: Budget,
    seed: int,
) -> tuple[list[quality.GateResult], dict[str, Any]]:
    """Every gate's verdict, logged to MLflow; raises GateFailedError if a blocking one fails."""
    logger = get_run_logger()
    incumbent = quality.incumbent()
    incumbent_auc = None
    if incumbent is not None:
        meta = incumbent.metadata
        figures = protocol(
            meta["estimator"],
            meta["estimator_params"]["searched"],
            loaded.codes,
            loaded.dataset.y,
            seed=seed,
            repeats=budget.protocol_repeats,
            inner_folds=None,
        )
        incumbent_auc = (incumbent.tag, float(figures["roc_auc"]["mean"]))
    distribution = incumbent.metadata.get("training_distribution") if incumbent else None
    rows = held_out_index(len(loaded.dataset.y), loaded.dataset.y, seed)
    assert np.array_equal(loaded.dataset.y[rows], data.y_test)
    fairness = fairness_report(
        loaded.protected["sex"].to_numpy()[rows],
        loaded.dataset.X["age_years"].to_numpy()[rows],
        evaluation.p_test <= threshold,
        data.y_test,
    )
    results = quality.evaluate(
        settings,
        protocol_auc=float(evaluation.protocol["roc_auc"]["mean"]),
        incumbent_auc=incumbent_auc,
        held_out=evaluation.held_out,
        mean_p_test=float(evaluation.p_test.mean()),
        psi_by_feature=quality.feature_psi(distribution, data.X_train) if distribution else None,
        fairness=fairness,
    )
    for gate in results:
        logger.info(gate.line())
    tracker.log(
        params={f"gate_{k}": v for k, v in settings.as_dict().items()},
        metrics={f"gate_{g.name}": g.figure for g in results},
        tags={f"gate_{g.name}": g.status for g in results},
    )
    quality.check(results)
    return results, fairness


@task(name="register", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def register(tracker: Tracker, pipeline: Pipeline, dataset: Dataset) -> str:
    """The model in MLflow's registry as `credit_risk`, with signature and input example."""
    example = pd.DataFrame(applicant_records(dataset.X.head(EXAMPLE_ROWS)))
    versions = library_versions()
    requirements = [f"{name}=={v}" for name, v in versions.items() if name != "python"]
    return tracker.register(pipeline, example, requirements)


@task(name="save", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def save(result: TrainingResult) -> str:
    """The model into the BentoML store (its metadata names the MLflow run and version)."""
    tag = model_store.save_model(
        result.pipeline, result.metadata, result.labels, check_codes=result.check_codes
    )
    get_run_logger().info("saved: %s", tag)
    return str(tag)


@task(name="link", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def link(tracker: Tracker, version: str, tag: str) -> None:
    """The MLflow version and run carry the BentoML tag."""
    tracker.link(version, tag)


@task(name="report", cache_policy=NO_CACHE)
def report(
    result: TrainingResult,
    data: Split,
    *,
    fairness: dict[str, Any],
    report_dir: Path,
    tracker: Tracker,
) -> list[Path]:
    """The training report, scorecard table and fairness report: files and MLflow artifacts."""
    paths = write_report(result.report, result.curves, report_dir)
    try:
        rows = scorecard_rows(result.pipeline, data.X_train, data.y_train, SCALING)
    except TypeError:  # a gradient-boosted winner has no points table
        rows = []
    outputs = {
        FAIRNESS_JSON: json.dumps(fairness, indent=2) + "\n",
        FAIRNESS_MARKDOWN: fairness_markdown(fairness),
    }
    if rows:
        outputs |= {CSV_NAME: to_csv(rows), MARKDOWN_NAME: to_markdown(rows)}
    for name, text in outputs.items():
        (report_dir / name).write_text(text)
        paths.append(report_dir / name)
    tracker.log_artifacts(paths)
    return paths


@flow(
    name=FLOW_NAME,
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 1),  # type: ignore[arg-type]
)
def training_flow(
    data_path: str = str(DEFAULT_DATA_PATH),
    model: ModelChoice = "auto",
    *,
    seed: int = DEFAULT_SEED,
    quick: bool = False,
    report_dir: str | None = str(DEFAULT_REPORT_DIR),
    gates: quality.GateSettings | None = None,
) -> dict[str, Any]:
    """Train, gate, register and save one model; returns where everything went."""
    started = time.perf_counter()
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    families: tuple[Family, ...] = FAMILIES if model == "auto" else (model,)
    # one BLAS/OpenMP thread per fit, as `run.train` does; candidates run side by side instead
    with threadpool_limits(limits=1):
        loaded = load_data(data_path)
        data, split_sha256 = split_data(loaded.codes, loaded.dataset.y, seed)
        tracker = Tracker.start(
            f"{FLOW_NAME}-{flow_run.get_name()}",
            tags={"prefect_flow_run_id": str(flow_run.get_id()), "quick": str(quick).lower()},
        )
        try:
            summary = _tracked(
                tracker,
                loaded,
                data,
                split_sha256,
                settings=gates or quality.GateSettings(),
                plan=(families, budget, seed, quick),
                report_dir=report_dir,
                started=started,
            )
        except BaseException:
            tracker.finish(failed=True)
            raise
        tracker.finish()
    return summary


def _tracked(
    tracker: Tracker,
    loaded: Loaded,
    data: Split,
    split_sha256: str,
    *,
    settings: quality.GateSettings,
    plan: tuple[tuple[Family, ...], Budget, int, bool],
    report_dir: str | None,
    started: float,
) -> dict[str, Any]:
    """The steps after the split, inside the training's MLflow run."""
    families, budget, seed, quick = plan
    ranked, fitted = _search(
        tracker, families, budget=budget, data=data, split_sha256=split_sha256, seed=seed
    )
    threshold, cv_train = select(ranked, data.y_train)
    evaluation = evaluate(
        ranked, data, loaded=loaded, threshold=threshold, budget=budget, seed=seed
    )
    gate_results, fairness = gates_task(
        settings,
        tracker,
        loaded=loaded,
        data=data,
        evaluation=evaluation,
        threshold=threshold,
        budget=budget,
        seed=seed,
    )
    result = assemble(
        pipeline=evaluation.pipeline,
        dataset=loaded.dataset,
        data=data,
        ranked=ranked,
        threshold=threshold,
        figures={"held_out": evaluation.held_out, "cv": cv_train, "protocol": evaluation.protocol},
        predictions={"p_test": evaluation.p_test, "p_train": evaluation.p_train},
        seed=seed,
        quick=quick,
        elapsed=time.perf_counter() - started,
    )
    _log_training(tracker, result)
    version, tag = _store(tracker, result, loaded.dataset, gate_results)
    result.report |= {
        "tag": tag,
        "mlflow_run_id": tracker.run_id,
        "mlflow_model_version": version,
        "gate_settings": settings.as_dict(),
        "gates": [g.as_dict() for g in gate_results],
        "fairness": fairness,
        "candidates": {"fitted": fitted, "from_cache": len(ranked) - fitted},
    }
    with tempfile.TemporaryDirectory() as scratch:
        paths = report(
            result,
            data,
            fairness=fairness,
            report_dir=Path(report_dir or scratch),
            tracker=tracker,
        )
        files = [str(p) for p in paths] if report_dir else []
    return {
        **result.report,
        "tracking_uri": tracker.uri,
        "prefect_flow_run_id": str(flow_run.get_id()),
        "report_files": files,
    }


def _store(
    tracker: Tracker,
    result: TrainingResult,
    dataset: Dataset,
    gate_results: list[quality.GateResult],
) -> tuple[str, str]:
    """Register in MLflow, save into BentoML naming that version, tag the version back."""
    version = register(tracker, result.pipeline, dataset)
    gate_record = [{k: g.as_dict()[k] for k in ("name", "figure", "status")} for g in gate_results]
    result.metadata |= {
        "mlflow_run_id": tracker.run_id,
        "mlflow_model_version": version,
        "quality_gates": gate_record,
    }
    try:
        tag = save(result)
    except BaseException:
        tracker.unregister(version)  # no registered version without its served model
        raise
    link(tracker, version, tag)
    return version, tag


def _search(
    tracker: Tracker,
    families: tuple[Family, ...],
    *,
    budget: Budget,
    data: Split,
    split_sha256: str,
    seed: int,
) -> tuple[list[CandidateScore], int]:
    """Every grid point as a mapped task, then as a nested MLflow run; best first."""
    jobs = [(family, params) for family in families for params in budget.grid(family)]
    futures = candidate.map(
        family=[family for family, _ in jobs],
        params=[params for _, params in jobs],
        X_train=unmapped(data.X_train),
        y_train=unmapped(data.y_train),
        repeats=unmapped(budget.search_repeats),
        seed=unmapped(seed),
        split_sha256=unmapped(split_sha256),
    )
    scores = [future.result() for future in futures]
    fitted = 0
    for future, score in zip(futures, scores, strict=True):
        was_fitted = future.state.name != "Cached"
        fitted += was_fitted
        tracker.log_candidate(score, fitted=was_fitted)
    get_run_logger().info("search: %d candidates, %d fitted, the rest cached", len(jobs), fitted)
    return rank(scores), fitted


def _log_training(tracker: Tracker, result: TrainingResult) -> None:
    """The run's parameters and headline metrics (held-out and protocol)."""
    meta = result.metadata
    tracker.log(
        params={
            "estimator": meta["estimator"],
            **{f"param_{k}": v for k, v in meta["estimator_params"]["searched"].items()},
            "seed": meta["seed"],
            "quick": meta["quick"],
            "threshold": meta["threshold"],
            "data_sha256": meta["data_sha256"],
            "schema_hash": schema_hash(),
        },
        metrics={
            **{
                k: v
                for k, v in flat_metrics(meta["metrics"]["held_out"], "held_out").items()
                if "confusion" not in k and k != "held_out_n"
            },
            **flat_metrics(
                {k: v for k, v in meta["cv"].items() if k not in ("params", "seed_sweep")},
                "protocol",
            ),
        },
    )


def monthly_deployment(cron: str = MONTHLY_CRON, **parameters: Any) -> RunnerDeployment:
    """The flow as a deployment on a cron schedule (what `serve_monthly` serves)."""
    deployment = training_flow.to_deployment(name=DEPLOYMENT_NAME, cron=cron, parameters=parameters)
    assert isinstance(deployment, RunnerDeployment)  # called outside an event loop: not awaited
    return deployment


def serve_monthly(cron: str = MONTHLY_CRON, **parameters: Any) -> None:
    """Serve the flow with Prefect's own scheduler until interrupted (blocks)."""
    serve(monthly_deployment(cron, **parameters))


def run_and_print(**arguments: Any) -> dict[str, Any]:
    """Run the flow once; print the report table, every gate and where to see the run."""
    summary: dict[str, Any] = training_flow(**arguments)
    lines = [render_table(summary), "  quality gates:"]
    lines += [f"    {g['name']:<12} {g['status']:<8} {g['description']}" for g in summary["gates"]]
    uri = summary["tracking_uri"]
    lines += [
        "",
        f"  MLflow run {summary['mlflow_run_id']} (experiment {EXPERIMENT}), registered "
        f"{REGISTERED_MODEL} version {summary['mlflow_model_version']} at {uri}",
        f"  see it: mlflow ui --backend-store-uri {uri}",
        "",
    ]
    print("\n".join(lines), flush=True)
    return summary
