"""MLflow's `champion`/`challenger` aliases follow the promotion state: a real SQLite tracking
store and registry, models registered and linked as the training flow links them, and the real
`credit-risk` commands."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from mlflow.tracking import MlflowClient

from credit_risk import model_store
from credit_risk.cli import main
from credit_risk.mlflow_aliases import DEFAULT_DB, configured_uri
from credit_risk.promotion import state_path
from credit_risk.training.data import applicant_records, load_dataset
from credit_risk.training.run import train
from credit_risk.training.tracking import REGISTERED_MODEL, Tracker
from tests.conftest import TEST_HOME, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_state() -> Iterator[Path]:
    """No promotion state before or after: other tests' servers must not inherit one."""
    path = state_path()
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)
    path.with_suffix(".lock").unlink(missing_ok=True)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store with its registry, as `make train-flow` uses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def linked(tracking: str, model_tag: str) -> Iterator[dict[str, str]]:
    """Two stored models registered in MLflow and linked both ways, as the flow's register ->
    save -> link steps do it: BentoML tag -> MLflow version."""
    result = train(model="logreg", quick=True, progress=lambda _m: None)
    example = pd.DataFrame(applicant_records(load_dataset().X.head(5)))
    tags: dict[str, str] = {}
    for run_name in ("first", "second"):
        tracker = Tracker.start(run_name, {})
        version = tracker.register(result.pipeline, example, [])
        metadata = result.metadata | {"mlflow_run_id": tracker.run_id}
        metadata["mlflow_model_version"] = version
        tag = str(
            model_store.save_model(result.pipeline, metadata, result.labels, result.check_codes)
        )
        tracker.link(version, tag)
        tracker.finish()
        tags[tag] = version
    latest = TEST_HOME / "models" / model_store.MODEL_NAME / "latest"
    latest.write_text(model_tag.split(":")[1])  # other tests rely on `latest`
    yield tags
    for tag in tags:
        shutil.rmtree(TEST_HOME / "models" / model_store.MODEL_NAME / tag.split(":")[1])


def cli(*args: str) -> Result:
    """`credit-risk ARGS` in process, as the console script runs it."""
    return CliRunner().invoke(main, list(args), env={"USER": "tester"})


def registry_aliases(uri: str) -> dict[str, str]:
    """What MLflow's registry says right now."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model(REGISTERED_MODEL)
    return {alias: str(version) for alias, version in model.aliases.items()}


def test_the_aliases_agree_with_the_promotion_state_after_each_change(
    clean_state: Path, tracking: str, linked: dict[str, str], model_tag: str
) -> None:
    one, two = linked
    unlinked = model_tag  # trained without the flow: no registered version
    steps = [
        ("promote", one, "--reason", "r"),
        ("promote", two, "--as", "challenger", "--reason", "r"),
        ("promote", two, "--reason", "won the trial"),
        ("rollback", "--reason", "r"),
        ("promote", unlinked, "--as", "challenger", "--reason", "r"),
        ("promote", unlinked, "--reason", "r"),
        ("promote", two, "--as", "challenger", "--reason", "r"),
        ("retire-challenger", "--reason", "r"),
        ("rollback", "--reason", "r"),
    ]
    seen = []
    for args in steps:
        result = cli(*args)
        assert result.exit_code == 0, result.output
        state = json.loads(clean_state.read_text())
        expected = {
            role: linked[state[role]]
            for role in ("champion", "challenger")
            if state[role] in linked
        }
        aliases = registry_aliases(tracking)
        assert aliases == expected, (args, state["champion"], state["challenger"])
        shown = ", ".join(f"{a} -> version {v}" for a, v in sorted(aliases.items())) or "none"
        assert result.output.strip().splitlines()[-1] == f"MLflow aliases: {shown}"
        seen.append(tuple(sorted(aliases)))
    # every combination was met: both, one of each, none
    assert {("challenger", "champion"), ("champion",), ("challenger",), ()} <= set(seen)


def test_an_alias_moved_by_hand_is_put_back_by_sync(
    clean_state: Path, tracking: str, linked: dict[str, str]
) -> None:
    one, two = linked
    assert cli("promote", one, "--reason", "r").exit_code == 0
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", linked[two])
    client.set_registered_model_alias(REGISTERED_MODEL, "challenger", linked[two])
    result = cli("champion", "--sync-mlflow")
    assert result.exit_code == 0, result.output
    assert registry_aliases(tracking) == {"champion": linked[one]}


def test_without_mlflow_configured_promotion_says_nothing_of_it(
    clean_state: Path, model_tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # no mlflow.db here
    assert configured_uri() is None
    result = cli("promote", model_tag, "--reason", "r")
    assert result.exit_code == 0, result.output
    assert "mlflow" not in result.output.lower()
    assert not (tmp_path / DEFAULT_DB).exists()
    refused = cli("champion", "--sync-mlflow")
    assert refused.exit_code == 2
    assert refused.output.startswith("Error: MLflow is not configured")


def test_the_flows_default_store_in_the_working_directory_counts_as_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_DB).touch()
    assert configured_uri() == f"sqlite:///{tmp_path / DEFAULT_DB}"


def test_an_unreachable_mlflow_costs_one_line_and_the_promotion_stands(
    clean_state: Path, model_tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = cli("promote", model_tag, "--reason", "r")
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.stderr.splitlines() if "MLflow" in ln]
    assert len(warnings) == 1, result.output
    assert warnings[0].startswith(f"warning: MLflow aliases not updated at {uri}: ")
    assert warnings[0].endswith("; the promotion state is changed")
    assert json.loads(clean_state.read_text())["champion"] == model_tag
