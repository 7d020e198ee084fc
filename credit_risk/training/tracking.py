"""MLflow tracking of a training flow: one run per training, one nested run per candidate.

Embedded by default: a SQLite store `mlflow.db` in the working directory (artifacts beside it
in `mlartifacts/`), unless `MLFLOW_TRACKING_URI` points elsewhere (a tracking server, say).
Everything goes through an explicit `MlflowClient` with run ids, so tasks on other threads log
to the right run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from credit_risk.mlflow_aliases import DEFAULT_DB
from credit_risk.model_store import MODEL_NAME
from credit_risk.training.validation import CandidateScore

EXPERIMENT: Final = "credit_risk"
REGISTERED_MODEL: Final = MODEL_NAME
ARTIFACT_DIR: Final = "mlartifacts"
BENTOML_TAG_KEY: Final = "bentoml_tag"
"""Tag on the MLflow model version (and run) naming the BentoML model saved from it."""
PARENT_TAG: Final = "mlflow.parentRunId"
FITTED_TAG: Final = "fitted_in_this_run"
"""On a candidate's nested run: `false` when its figures came from the flow's cache."""


def tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the SQLite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _artifact_location(uri: str) -> str | None:
    """Beside a SQLite file; a tracking server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACT_DIR).resolve().as_uri()
    return None


@dataclass(frozen=True)
class Tracker:
    """The training's MLflow run and the client that writes to it."""

    client: MlflowClient
    uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def start(cls, run_name: str, tags: dict[str, str]) -> Tracker:
        """Open the training's run in the `credit_risk` experiment (created if missing)."""
        uri = tracking_uri()
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(EXPERIMENT, artifact_location=_artifact_location(uri))
        )
        run = client.create_run(experiment_id, tags=tags, run_name=run_name)
        return cls(client, uri, experiment_id, run.info.run_id)

    def log(
        self,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Parameters, metrics and tags of the training run in one call."""
        _log_batch(self.client, self.run_id, params or {}, metrics or {}, tags or {})

    def log_candidate(self, candidate: CandidateScore, *, fitted: bool) -> str:
        """A nested run holding one grid point's CV figures; returns its run id."""
        run = self.client.create_run(
            self.experiment_id,
            tags={PARENT_TAG: self.run_id, FITTED_TAG: str(fitted).lower()},
            run_name=f"{candidate.family} "
            + " ".join(f"{k}={v:g}" for k, v in candidate.params.items()),
        )
        figures = candidate.as_dict()["roc_auc"]
        _log_batch(
            self.client,
            run.info.run_id,
            {"estimator": candidate.family, **candidate.params},
            {"cv_roc_auc_mean": figures["mean"], "cv_roc_auc_std": figures["std"]},
            {},
        )
        for step, auc in enumerate(candidate.auc_per_repeat):
            self.client.log_metric(run.info.run_id, "cv_roc_auc", auc, step=step)
        self.client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    def register(self, pipeline: Pipeline, example: pd.DataFrame, requirements: list[str]) -> str:
        """Log the pipeline as the run's model and register it as `credit_risk`; its version."""
        with warnings.catch_warnings():  # the API's integer fields are integers: no missing values
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
            signature = infer_signature(example, pipeline.predict_proba(example))
        with mlflow.start_run(run_id=self.run_id):
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=REGISTERED_MODEL,
                pyfunc_predict_fn="predict_proba",
                pip_requirements=requirements,
                skops_trusted_types=_own_types(pipeline),
            )
        # leaving the block marked the run finished; it stays open until `finish`
        self.client.update_run(self.run_id, status="RUNNING")
        version = info.registered_model_version
        if version is None:
            msg = f"MLflow did not register {REGISTERED_MODEL} for run {self.run_id}"
            raise RuntimeError(msg)
        return str(version)

    def link(self, version: str, bentoml_tag: str) -> None:
        """The MLflow version and run carry the BentoML tag the model was saved under."""
        self.client.set_model_version_tag(REGISTERED_MODEL, version, BENTOML_TAG_KEY, bentoml_tag)
        self.client.set_tag(self.run_id, BENTOML_TAG_KEY, bentoml_tag)

    def unregister(self, version: str) -> None:
        """Undo a registration whose BentoML save failed: no version without its model."""
        self.client.delete_model_version(REGISTERED_MODEL, version)

    def log_artifacts(self, paths: list[Path]) -> None:
        """Report files under the run's `report/` artifacts."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path="report")

    def finish(self, *, failed: bool = False) -> None:
        """Close the run as FINISHED or FAILED."""
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def _own_types(pipeline: Pipeline) -> list[str]:
    """The project's own pipeline steps, which MLflow's skops format must be told to trust."""
    return sorted(
        f"{type(step).__module__}.{type(step).__qualname__}"
        for _, step in pipeline.steps
        if type(step).__module__.startswith("credit_risk.")
    )


def _log_batch(
    client: MlflowClient,
    run_id: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> None:
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )


def flat_metrics(figures: dict[str, Any], prefix: str) -> dict[str, float]:
    """Numeric leaves of nested figures as `prefix_key_subkey` metrics (lists left out)."""
    out: dict[str, float] = {}
    for key, value in figures.items():
        name = f"{prefix}_{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def linked_version(client: MlflowClient, bentoml_tag: str, version: str | None) -> str | None:
    """The registered version a BentoML model was saved from, if this registry holds it: the
    model's metadata names the version, and the version's `bentoml_tag` must name the model
    back (another registry's version 3 is another model)."""
    if not version:
        return None
    try:
        registered = client.get_model_version(REGISTERED_MODEL, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return version if registered.tags.get(BENTOML_TAG_KEY) == bentoml_tag else None


def set_aliases(client: MlflowClient, versions: Mapping[str, str | None]) -> dict[str, str]:
    """Point each alias at its version, or remove it where there is none; the aliases after."""
    try:
        aliases = _aliases(client)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and not any(versions.values()):
            return {}  # nothing registered, nothing to point at
        raise
    for alias, version in versions.items():
        if version and aliases.get(alias) != version:
            client.set_registered_model_alias(REGISTERED_MODEL, alias, version)
        elif not version and alias in aliases:
            client.delete_registered_model_alias(REGISTERED_MODEL, alias)
    return _aliases(client)


def _aliases(client: MlflowClient) -> dict[str, str]:
    registered = client.get_registered_model(REGISTERED_MODEL)
    return {alias: str(version) for alias, version in registered.aliases.items()}
