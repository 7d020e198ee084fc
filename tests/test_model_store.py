"""Model store round trip in a store of the module's own; mismatched or broken models refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np
import pytest
import yaml

from credit_risk import model_store
from credit_risk.compiled import LinearScorecard
from credit_risk.model_store import (
    MODEL_FILE,
    ModelLoadError,
    ModelMismatchError,
    ModelNotFoundError,
    load_model,
    save_model,
)
from credit_risk.schema import FEATURES, SAME_CONTRACT_HASHES, contract_hash, schema_hash
from credit_risk.training.data import load_dataset
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.run import TrainingResult, train, train_and_save
from tests.conftest import ROOT, imported_modules, store_at


@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    return train(quick=True, progress=lambda _msg: None)


@pytest.fixture(scope="module", autouse=True)
def store(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store of this module's own: the models its tests save, make `latest` and damage never
    reach the session store."""
    with store_at(tmp_path_factory.mktemp("model-store") / "bentoml") as home:
        yield home


@pytest.fixture(scope="module")
def saved_tag(store: Path, trained: TrainingResult) -> str:
    return str(
        save_model(
            trained.pipeline, trained.metadata, trained.labels, check_codes=trained.check_codes
        )
    )


def test_round_trip_gives_identical_probabilities(saved_tag: str, trained: TrainingResult) -> None:
    loaded = load_model(saved_tag)
    assert loaded.tag == saved_tag
    frame = load_dataset().X
    before = trained.pipeline.predict_proba(frame)[:, 1]
    after = loaded.pipeline.predict_proba(frame)[:, 1]
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(after, loaded.pipeline.predict_proba(encode_frame(frame))[:, 1])


def test_metadata_survives_the_store(saved_tag: str, trained: TrainingResult) -> None:
    meta = load_model(saved_tag).metadata
    for key in (
        "threshold",
        "score_scaling",
        "features",
        "schema_hash",
        "estimator",
        "estimator_params",
        "metrics",
        "cv",
        "data_sha256",
        "library_versions",
        "trained_at",
        "seed",
        "training_distribution",
    ):
        assert key in meta, key
    assert meta["threshold"] == trained.metadata["threshold"]
    assert meta["features"] == list(FEATURES)
    assert meta["schema_hash"] == schema_hash()
    assert (
        meta["metrics"]["held_out"]["roc_auc"] == trained.metadata["metrics"]["held_out"]["roc_auc"]
    )
    json.dumps(meta)  # plain JSON all the way down


def test_latest_resolves_to_the_newest(saved_tag: str, trained: TrainingResult) -> None:
    newer = str(
        save_model(
            trained.pipeline, trained.metadata, trained.labels, check_codes=trained.check_codes
        )
    )
    assert newer != saved_tag
    assert load_model("credit_risk:latest").tag == newer
    assert load_model(saved_tag).tag == saved_tag


def test_missing_model_says_how_to_get_one(store: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"not found.*make train.*CREDIT_RISK_MODEL"):
        load_model("credit_risk:doesnotexist")
    with pytest.raises(ModelNotFoundError, match="make train"):
        load_model("no such tag!")


def _save_with(trained: TrainingResult, **changes: Any) -> str:
    """Save bypassing save_model's own check, as an older or foreign trainer would have."""
    metadata = {**trained.metadata, **changes}
    with bentoml.models.create("credit_risk", labels=trained.labels, metadata=metadata) as m:
        joblib.dump(trained.pipeline, m.path_of(model_store.MODEL_FILE))
    return str(m.tag)


def test_model_for_other_features_is_refused(store: Path, trained: TrainingResult) -> None:
    features = [*FEATURES[:-1], "foreign_worker"]
    tag = _save_with(trained, features=features)
    with pytest.raises(ModelMismatchError, match=r"unknown feature.*foreign_worker") as info:
        load_model(tag)
    assert "telephone" in str(info.value)
    assert "Retrain" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_model_with_the_fingerprint_from_before_wording_was_left_out_loads(
    store: Path, trained: TrainingResult
) -> None:
    (legacy,) = SAME_CONTRACT_HASHES
    assert legacy != schema_hash()
    assert contract_hash(legacy) == schema_hash()
    assert contract_hash("0" * 64) == "0" * 64
    load_model(_save_with(trained, schema_hash=legacy))


def test_model_for_other_schema_is_refused(store: Path, trained: TrainingResult) -> None:
    tag = _save_with(trained, schema_hash="0" * 64)
    with pytest.raises(ModelMismatchError, match=r"applicant schema '0000.*Retrain"):
        load_model(tag)


def test_reordered_features_are_refused(store: Path, trained: TrainingResult) -> None:
    tag = _save_with(trained, features=list(reversed(FEATURES)))
    with pytest.raises(ModelMismatchError, match="different order"):
        load_model(tag)


def test_save_refuses_incompatible_metadata(trained: TrainingResult) -> None:
    with pytest.raises(ModelMismatchError):
        save_model(trained.pipeline, {**trained.metadata, "features": ["x"]}, trained.labels)


def test_corrupted_pickle_is_a_clear_error(store: Path, trained: TrainingResult) -> None:
    tag = _save_with(trained)
    path = Path(bentoml.models.get(tag).path_of(model_store.MODEL_FILE))
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match=r"cannot read .*model\.joblib.*make train"):
        load_model(tag)
    path.unlink()
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model(tag)


def test_bentoml_cli_shows_the_metadata(saved_tag: str, store: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "get", saved_tag, "-o", "yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
    ).stdout
    info = yaml.safe_load(out)
    assert info["labels"]["estimator"] in {"logreg", "hgb"}
    meta = info["metadata"]
    assert meta["schema_hash"] == schema_hash()
    assert 0 < meta["threshold"] < 1
    assert meta["score_scaling"]["pdo"] == 20.0
    assert "roc_auc" in meta["metrics"]["held_out"]


def test_serving_model_is_the_compiled_scorecard(saved_tag: str, trained: TrainingResult) -> None:
    served = model_store.load_serving_model(saved_tag)
    assert isinstance(served.scorer, LinearScorecard)
    codes = encode_frame(load_dataset().X)
    got, _ = served.scorer.predict(codes)
    expected = trained.pipeline.predict_proba(codes)[:, 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_serving_a_scorecard_imports_neither_sklearn_nor_pandas(saved_tag: str) -> None:
    loaded = imported_modules(
        "from credit_risk.compiled import LinearScorecard\n"
        "from credit_risk.model_store import load_serving_model\n"
        f"assert isinstance(load_serving_model({saved_tag!r}).scorer, LinearScorecard)"
    )
    assert sorted({"sklearn", "pandas", "scipy"} & loaded) == []


WITHOUT_SKLEARN = """
import importlib.abc, json, sys


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if sys.argv[2] == "blocked":
    sys.meta_path.insert(0, _NotInstalled())
from credit_risk.model_store import RegistryError, load_serving_model

try:
    served = load_serving_model(sys.argv[1])
    outcome = {"scorer": type(served.scorer).__name__}
except RegistryError as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome["sklearn_loaded"] = "sklearn" in sys.modules
print(json.dumps(outcome))
"""


def test_a_tree_model_without_scikit_learn_is_refused_in_one_line(tmp_path: Path) -> None:
    """The runtime lock has no scikit-learn: only a scorecard serves there."""
    tag = str(train_and_save(quick=True, model="hgb", report_dir=tmp_path, quiet=True))

    def load(mode: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_SKLEARN, tag, mode],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert "Traceback" not in result.stderr
        outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return outcome

    assert load("installed") == {"scorer": "PipelineScorer", "sklearn_loaded": True}
    refused = load("blocked")
    assert refused["error"] == "ModelLoadError"
    assert refused["sklearn_loaded"] is False
    message = refused["message"]
    assert "\n" not in message
    assert f"model {tag} " in message
    assert "needs scikit-learn" in message
    assert "pip install 'credit-risk-bento[training]'" in message
    assert "or serve a scorecard" in message


def test_tampered_scorecard_is_refused(store: Path, trained: TrainingResult) -> None:
    tag = str(
        save_model(
            trained.pipeline, trained.metadata, trained.labels, check_codes=trained.check_codes
        )
    )
    path = Path(bentoml.models.get(tag).path_of(model_store.SCORECARD_FILE))
    with np.load(path) as data:
        arrays = dict(data)
    arrays["flat_table"] = arrays["flat_table"] * 1.01
    np.savez(path, **arrays)
    try:
        with pytest.raises(ModelLoadError, match="does not reproduce"):
            model_store.load_serving_model(tag)
    finally:
        bentoml.models.delete(tag)  # never leave a broken model as the store's latest


def test_a_scorecard_is_not_saved_without_its_check_rows(
    store: Path, trained: TrainingResult
) -> None:
    with pytest.raises(ValueError, match="check_codes"):
        save_model(trained.pipeline, trained.metadata, trained.labels)


def _save_as_before_the_move(trained: TrainingResult) -> str:
    """Save the pipeline as a model trained before the package moved would have been pickled:
    its transformers under their old module path, `credit_risk.preprocessing`."""
    from credit_risk.training import preprocessing  # noqa: PLC0415

    classes = (preprocessing.SchemaEncoder, preprocessing.WoEEncoder)
    sys.modules["credit_risk.preprocessing"] = preprocessing
    try:
        for cls in classes:
            cls.__module__ = "credit_risk.preprocessing"
        tag = save_model(
            trained.pipeline, trained.metadata, trained.labels, check_codes=trained.check_codes
        )
    finally:
        for cls in classes:
            cls.__module__ = preprocessing.__name__
        del sys.modules["credit_risk.preprocessing"]
    return str(tag)


def test_a_pipeline_pickled_before_the_move_is_refused_with_the_retrain_line(
    store: Path, trained: TrainingResult
) -> None:
    tag = _save_as_before_the_move(trained)
    pickled = store / "models" / "credit_risk" / tag.split(":")[1] / MODEL_FILE
    assert b"credit_risk.preprocessing" in pickled.read_bytes()
    with pytest.raises(ModelLoadError) as excinfo:
        model_store.load_model(tag)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "No module named 'credit_risk.preprocessing'" in message
    assert "retrain with `make train`" in message


def test_a_scorecard_saved_before_the_move_still_serves(
    store: Path, trained: TrainingResult
) -> None:
    """Serving reads only the compiled tables, which hold no pickle and no module path."""
    tag = _save_as_before_the_move(trained)
    served = model_store.load_serving_model(tag)
    codes = encode_frame(load_dataset().X)
    got, _ = served.scorer.predict(codes)
    np.testing.assert_allclose(got, trained.pipeline.predict_proba(codes)[:, 1], atol=1e-12)
