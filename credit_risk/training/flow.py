"""Retraining as a Prefect flow, tracked in MLflow, gated before anything is saved.

load -> split -> candidates (mapped, cached) -> select -> evaluate -> gates -> register ->
save -> link -> report. Each task wraps the step of the same name in `steps.py` (the
candidates: one task per grid point around `validation.score_candidate`), the functions
`python train.py` calls in the same order, so the two cannot train, gate or report differently.
What only the flow adds: the candidate cache, MLflow tracking and MLflow's model registry.

Embedded by default: Prefect runs the flow on its temporary local server unless
`PREFECT_API_URL` names a server; MLflow tracks to `mlflow.db` in the working directory
unless `MLFLOW_TRACKING_URI` is set (`credit_risk.training.tracking`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd
from prefect import flow, get_run_logger, serve, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.deployments.runner import RunnerDeployment
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from credit_risk.arrays import FloatArray, IntArray
from credit_risk.schema import schema_hash
from credit_risk.training import (
    DEFAULT_SEED,
    Family,
    ModelChoice,
    estimators,
    preprocessing,
    steps,
    validation,
)
from credit_risk.training.data import DEFAULT_DATA_PATH, Dataset, applicant_records
from credit_risk.training.gates import GateSettings
from credit_risk.training.holdout import Split
from credit_risk.training.holdout import split as split_rows
from credit_risk.training.report import render_table
from credit_risk.training.run import DEFAULT_REPORT_DIR
from credit_risk.training.steps import TrainingResult, library_versions
from credit_risk.training.tracking import EXPERIMENT, REGISTERED_MODEL, Tracker, flat_metrics
from credit_risk.training.validation import CandidateScore, rank, score_candidate

FLOW_NAME: Final = "credit-risk-training"
DEPLOYMENT_NAME: Final = "monthly"
MONTHLY_CRON: Final = "0 6 1 * *"
"""06:00 on the first day of every month (the scheduler's time zone, UTC by default)."""
CANDIDATE_CACHE: Final = timedelta(days=30)
STORE_RETRIES: Final = 2
"""Store I/O (the MLflow registry, the BentoML store) can fail transiently: try again."""
EXAMPLE_ROWS: Final = 5


def _log(message: str) -> None:
    """A step's progress line, into the current task's (or flow's) Prefect log."""
    get_run_logger().info(message)


@task(name="load", cache_policy=NO_CACHE)
def load(data_path: str) -> steps.Loaded:
    """`steps.load`: the validated data (sha256 check included) and its protected columns."""
    return steps.load(data_path, say=_log)


@task(name="split", cache_policy=NO_CACHE)
def split(codes: FloatArray, y: IntArray, seed: int) -> tuple[Split, str]:
    """The held-out split, and a digest of the training part that keys the candidate cache."""
    data = split_rows(codes, y, seed)
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
def select(ranked: list[CandidateScore], y_train: IntArray) -> steps.Selection:
    """`steps.select`: the least-cost threshold on the winner's out-of-fold predictions."""
    return steps.select(ranked, y_train, say=_log)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(
    plan: steps.Plan,
    ranked: list[CandidateScore],
    loaded: steps.Loaded,
    data: Split,
    selection: steps.Selection,
) -> steps.Evaluation:
    """`steps.evaluate`: the winner on the held-out split, then under the repeated-CV protocol."""
    return steps.evaluate(plan, ranked, loaded, data, selection, say=_log)


@task(name="gates", cache_policy=NO_CACHE)
def gates_task(
    settings: GateSettings,
    tracker: Tracker,
    plan: steps.Plan,
    loaded: steps.Loaded,
    data: Split,
    *,
    evaluation: steps.Evaluation,
    selection: steps.Selection,
    skip_gates: bool,
) -> steps.Verdicts:
    """`steps.gates`, logged to MLflow; raises GateFailedError if a blocking one fails."""
    verdicts = steps.gates(
        settings, plan, loaded, data, evaluation=evaluation, selection=selection, say=_log
    )
    comparison = verdicts.comparison()
    names = ("candidate_roc_auc", "champion_roc_auc", "difference", "std_error")
    figures = {name: comparison[name] for name in names if name in comparison}
    if "interval" in comparison:
        figures |= dict(zip(("interval_low", "interval_high"), comparison["interval"], strict=True))
    tracker.log(
        params={
            **{f"gate_{k}": v for k, v in settings.as_dict().items()},
            "gates_skipped": skip_gates,
            "champion": comparison.get("champion", "-"),
            "champion_source": comparison.get("champion_source", "-"),
            "champion_rows": comparison.get("rows", 0),
        },
        metrics={
            **{f"gate_{g.name}": g.figure for g in verdicts.gates},
            **{f"champion_{k}": v for k, v in figures.items()},
        },
        tags={f"gate_{g.name}": g.status for g in verdicts.gates},
    )
    if not skip_gates:
        verdicts.enforce()
    return verdicts


@task(name="register", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def register(tracker: Tracker, pipeline: Pipeline, dataset: Dataset) -> str:
    """The model in MLflow's registry as `credit_risk`, with signature and input example."""
    example = pd.DataFrame(applicant_records(dataset.X.head(EXAMPLE_ROWS)))
    versions = library_versions()
    requirements = [f"{name}=={v}" for name, v in versions.items() if name != "python"]
    return tracker.register(pipeline, example, requirements)


@task(name="save", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def save(result: TrainingResult) -> str:
    """`steps.save`: the model into the BentoML store (its metadata names the MLflow run)."""
    tag = steps.save(result)
    _log(f"saved: {tag}")
    return tag


@task(name="link", retries=STORE_RETRIES, retry_delay_seconds=2, cache_policy=NO_CACHE)
def link(tracker: Tracker, version: str, tag: str) -> None:
    """The MLflow version and run carry the BentoML tag."""
    tracker.link(version, tag)


@task(name="report", cache_policy=NO_CACHE)
def report(result: TrainingResult, report_dir: Path, tracker: Tracker) -> list[Path]:
    """`steps.report`: the report files, also as the MLflow run's artifacts."""
    paths = steps.report(result, report_dir)
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
    gates: GateSettings | None = None,
    skip_gates: bool = False,
) -> dict[str, Any]:
    """Train, gate, register and save one model; returns where everything went."""
    started = time.perf_counter()
    plan = steps.Plan.of(model, seed, quick=quick)
    # one BLAS/OpenMP thread per fit, as `run.train` does; candidates run side by side instead
    with threadpool_limits(limits=1):
        loaded = load(data_path)
        data, split_sha256 = split(loaded.codes, loaded.dataset.y, seed)
        tracker = Tracker.start(
            f"{FLOW_NAME}-{flow_run.get_name()}",
            tags={"prefect_flow_run_id": str(flow_run.get_id()), "quick": str(quick).lower()},
        )
        try:
            summary = _tracked(
                tracker,
                plan,
                loaded,
                data,
                split_sha256,
                settings=gates or GateSettings(),
                skip_gates=skip_gates,
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
    plan: steps.Plan,
    loaded: steps.Loaded,
    data: Split,
    split_sha256: str,
    *,
    settings: GateSettings,
    skip_gates: bool,
    report_dir: str | None,
    started: float,
) -> dict[str, Any]:
    """The steps after the split, inside the training's MLflow run."""
    ranked, fitted = _search(tracker, plan, data, split_sha256)
    selection = select(ranked, data.y_train)
    evaluation = evaluate(plan, ranked, loaded, data, selection)
    verdicts = gates_task(
        settings,
        tracker,
        plan,
        loaded,
        data,
        evaluation=evaluation,
        selection=selection,
        skip_gates=skip_gates,
    )
    result = steps.assemble(
        plan,
        loaded,
        data,
        ranked,
        selection=selection,
        evaluation=evaluation,
        verdicts=verdicts,
        elapsed=time.perf_counter() - started,
        gates_skipped=skip_gates,
    )
    _log_training(tracker, result)
    version, tag = _store(tracker, result, loaded.dataset)
    result.report |= {
        "tag": tag,
        "mlflow_run_id": tracker.run_id,
        "mlflow_model_version": version,
        "candidates": {"fitted": fitted, "from_cache": len(ranked) - fitted},
    }
    with tempfile.TemporaryDirectory() as scratch:
        paths = report(result, Path(report_dir or scratch), tracker)
        files = [str(p) for p in paths] if report_dir else []
    return {
        **result.report,
        "tracking_uri": tracker.uri,
        "prefect_flow_run_id": str(flow_run.get_id()),
        "report_files": files,
    }


def _store(tracker: Tracker, result: TrainingResult, dataset: Dataset) -> tuple[str, str]:
    """Register in MLflow, save into BentoML naming that version, tag the version back."""
    version = register(tracker, result.pipeline, dataset)
    result.metadata |= {"mlflow_run_id": tracker.run_id, "mlflow_model_version": version}
    try:
        tag = save(result)
    except BaseException:
        tracker.unregister(version)  # no registered version without its served model
        raise
    link(tracker, version, tag)
    return version, tag


def _search(
    tracker: Tracker, plan: steps.Plan, data: Split, split_sha256: str
) -> tuple[list[CandidateScore], int]:
    """Every grid point as a mapped task, then as a nested MLflow run; best first."""
    jobs = plan.grid()
    futures = candidate.map(
        family=[family for family, _ in jobs],
        params=[params for _, params in jobs],
        X_train=unmapped(data.X_train),
        y_train=unmapped(data.y_train),
        repeats=unmapped(plan.budget.search_repeats),
        seed=unmapped(plan.seed),
        split_sha256=unmapped(split_sha256),
    )
    scores = [future.result() for future in futures]
    fitted = 0
    for future, score in zip(futures, scores, strict=True):
        was_fitted = future.state.name != "Cached"
        fitted += was_fitted
        tracker.log_candidate(score, fitted=was_fitted)
    _log(f"search: {len(jobs)} candidates, {fitted} fitted, the rest cached")
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
    """Run the flow once; print the report table (gates included) and where to see the run."""
    summary: dict[str, Any] = training_flow(**arguments)
    uri = summary["tracking_uri"]
    lines = [
        render_table(summary),
        f"  MLflow run {summary['mlflow_run_id']} (experiment {EXPERIMENT}), registered "
        f"{REGISTERED_MODEL} version {summary['mlflow_model_version']} at {uri}",
        f"  see it: mlflow ui --backend-store-uri {uri}",
        "",
    ]
    print("\n".join(lines), flush=True)
    return summary


def quiet_teardown() -> None:
    """Keep Prefect's shutdown lines off the terminal once a run has ended.

    Prefect 3.9 stops its temporary server from an `atexit` hook, after the command's last
    line, and logs "Stopping temporary server" at INFO on the `prefect` logger: from here on
    that logger reports warnings and errors only. (Stopping the server earlier instead would
    cut off Prefect's background log and event senders, which drain at exit.)
    """
    logging.getLogger("prefect").setLevel(logging.WARNING)
