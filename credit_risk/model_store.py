"""The BentoML model store as training writes it and serving reads it.

A model is a fitted scikit-learn pipeline (`model.joblib`) plus metadata, and for a linear
scorecard its compiled lookup tables (`scorecard.npz`), which serving loads without importing
scikit-learn (the runtime lock has none: serving any other model needs the `training` extra).
Loading refuses a model trained on another applicant schema: its scores would be for different
inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import bentoml
import joblib
import numpy as np
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml.exceptions import NotFound

from credit_risk import TRAINING_INSTALL_HINT
from credit_risk.arrays import FloatArray
from credit_risk.compiled import LinearScorecard, Scorer, compile_pipeline
from credit_risk.schema import FEATURES, contract_hash, schema_hash

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MODEL_NAME: Final = "credit_risk"
DEFAULT_TAG: Final = f"{MODEL_NAME}:latest"
MODEL_FILE: Final = "model.joblib"
SCORECARD_FILE: Final = "scorecard.npz"
"""The compiled scorecard, written beside the pipeline when it is linear."""
MODEL_ENV: Final = "CREDIT_RISK_MODEL"
"""Environment variable that pins the served model tag (default: the latest)."""

HOW_TO_FIX: Final = f"train one with `make train` or set {MODEL_ENV} to an existing tag"
"""What to do about a model that is missing: the end of every not-found message."""


class RegistryError(RuntimeError):
    """A model cannot be served; the message says which and what to do.

    `problem` is the message without the remedy, for a caller that serves the model in
    another role and tells its own remedy (the challenger: serving/workarounds/model_reference).
    """

    def __init__(self, message: str, *, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem or message


class ModelNotFoundError(RegistryError, LookupError):
    """No model under that tag in the store BENTOML_HOME points at."""


class ModelLoadError(RegistryError):
    """The model exists but its files are missing or unreadable."""


class ModelMismatchError(RegistryError, ValueError):
    """The model was trained for a different applicant schema."""


@dataclass(frozen=True)
class LoadedModel:
    """A pipeline ready to score, with what training recorded about it."""

    tag: str
    pipeline: Pipeline
    metadata: dict[str, Any]
    creation_time: datetime


def store_home() -> Path:
    """The BentoML home this process uses: `$BENTOML_HOME` as it was when first needed."""
    return Path(BentoMLContainer.bentoml_home.get())


def save_model(
    pipeline: Pipeline,
    metadata: dict[str, Any],
    labels: dict[str, str],
    check_codes: FloatArray | None = None,
) -> Any:
    """Write the fitted pipeline and its metadata as a new `credit_risk` version.

    A linear scorecard is also compiled; `check_codes` (a few training rows) and the
    pipeline's probabilities for them go with it, so a load can prove the tables still agree.
    Returns the new `bentoml.Tag`. Refuses metadata that would not load back.
    """
    check_compatible(metadata, "the metadata to save")
    try:
        scorecard: LinearScorecard | None = LinearScorecard.from_pipeline(pipeline)
    except TypeError:
        scorecard = None
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        joblib.dump(pipeline, model.path_of(MODEL_FILE))
        if scorecard is not None:
            if check_codes is None:
                msg = "a linear scorecard needs check_codes to prove its compiled tables"
                raise ValueError(msg)
            expected = np.asarray(pipeline.predict_proba(check_codes)[:, 1], dtype=np.float64)
            got, _ = scorecard.predict(check_codes)
            if not np.allclose(got, expected, rtol=0, atol=1e-12):
                msg = "the compiled scorecard does not reproduce the pipeline; not saved"
                raise ValueError(msg)
            scorecard.save(Path(model.path_of(SCORECARD_FILE)), check_codes, expected)
    return model.tag


@dataclass(frozen=True)
class ServingModel:
    """What the runner scores with: the fastest exact scorer, and the model's metadata."""

    tag: str
    scorer: Scorer
    metadata: dict[str, Any]


def load_serving_model(tag: str = DEFAULT_TAG) -> ServingModel:
    """The compiled scorecard when there is one (numpy only), else the compiled pipeline."""
    model, resolved, metadata = _get_compatible(tag)
    tables = Path(model.path_of(SCORECARD_FILE))
    if tables.exists():
        try:
            return ServingModel(resolved, LinearScorecard.load(tables), metadata)
        except Exception as exc:  # unreadable or disagreeing tables: the model is unusable
            problem = f"model {resolved}: cannot use {tables} ({type(exc).__name__}: {exc})"
            msg = f"{problem}; retrain with `make train` or set {MODEL_ENV} to another tag"
            raise ModelLoadError(msg, problem=problem) from exc
    pipeline = _read_pipeline(model, resolved)
    scorer = compile_pipeline(pipeline, metadata.get("reference_codes"))
    return ServingModel(resolved, scorer, metadata)


def _get_compatible(tag: str) -> tuple[Any, str, dict[str, Any]]:
    """The stored model, its resolved tag and metadata; refused if made for another schema."""
    model = _get(tag)
    resolved = str(model.tag)
    metadata = dict(model.info.metadata)
    check_compatible(metadata, f"model {resolved}")
    return model, resolved, metadata


def stored_metadata(tag: str) -> dict[str, Any]:
    """What training recorded for a stored model, without loading it (`ModelNotFoundError`
    when the store does not hold it)."""
    return dict(_get(tag).info.metadata)


def _get(tag: str) -> Any:
    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise ModelNotFoundError(not_found_message(tag), problem=not_found(tag)) from None
    except ValueError as exc:  # a malformed tag string
        raise ModelNotFoundError(
            invalid_tag_message(tag, exc), problem=invalid_tag(tag, exc)
        ) from None


def not_found_message(tag: str) -> str:
    """One line: which tag, which store, and how to get a model."""
    return f"{not_found(tag)}: {HOW_TO_FIX}"


def not_found(tag: str) -> str:
    """Which tag is missing from which store (the message without its remedy)."""
    return f"model {tag!r} not found in the BentoML store at {store_home()}"


def invalid_tag_message(tag: str, error: Exception) -> str:
    """One line for a tag that is not a valid BentoML tag."""
    return f"{invalid_tag(tag, error)}: {HOW_TO_FIX}"


def invalid_tag(tag: str, error: Exception) -> str:
    """Which tag is malformed and why (the message without its remedy)."""
    return f"model tag {tag!r} is not valid ({error})"


def load_model(tag: str = DEFAULT_TAG) -> LoadedModel:
    """Load the fitted pipeline; refuse one that is missing, corrupt or for another schema."""
    model, resolved, metadata = _get_compatible(tag)
    pipeline = _read_pipeline(model, resolved)
    return LoadedModel(
        tag=resolved,
        pipeline=pipeline,
        metadata=metadata,
        creation_time=model.info.creation_time,
    )


def _read_pipeline(model: Any, resolved: str) -> Pipeline:
    try:
        from sklearn.pipeline import Pipeline  # noqa: PLC0415 (serving a scorecard never needs it)
    except ImportError:
        problem = (
            f"model {resolved} is not a compiled scorecard and needs scikit-learn, which is not "
            f"installed: {TRAINING_INSTALL_HINT}"
        )
        msg = f"{problem}, or serve a scorecard (set {MODEL_ENV})"
        raise ModelLoadError(msg, problem=problem) from None
    path = Path(model.path_of(MODEL_FILE))
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # any unpickling failure means the same thing: unusable
        problem = f"model {resolved}: cannot read {path} ({type(exc).__name__}: {exc})"
        msg = f"{problem}; retrain with `make train` or set {MODEL_ENV} to another tag"
        raise ModelLoadError(msg, problem=problem) from exc
    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline, "predict_proba"):
        msg = (
            f"model {resolved}: {path} holds a {type(pipeline).__name__}, not a fitted "
            f"scikit-learn Pipeline; retrain with `make train`"
        )
        raise ModelLoadError(msg)
    return pipeline


def check_compatible(metadata: dict[str, Any], what: str) -> None:
    """Raise ModelMismatchError unless `metadata` was made for this applicant schema."""
    features = metadata.get("features")
    if features is None or list(features) != list(FEATURES):
        ours = set(FEATURES)
        theirs = set(features or [])
        parts = []
        if theirs - ours:
            parts.append(f"unknown feature(s) {sorted(theirs - ours)}")
        if ours - theirs:
            parts.append(f"missing feature(s) {sorted(ours - theirs)}")
        if not parts:
            parts.append("features in a different order")
        problem = f"{what} does not match the applicant schema: {'; '.join(parts)}"
        raise ModelMismatchError(f"{problem}. Retrain with `make train`.", problem=problem)
    if contract_hash(metadata.get("schema_hash")) != schema_hash():
        problem = (
            f"{what} was trained for applicant schema {metadata.get('schema_hash')!r}, "
            f"this code has {schema_hash()!r} (field bounds or vocabularies changed)"
        )
        raise ModelMismatchError(f"{problem}. Retrain with `make train`.", problem=problem)
