"""The training flow end to end: real Prefect (test harness), real MLflow (temporary SQLite),
the real data, a temporary BentoML store; quick budgets."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from sklearn.model_selection import train_test_split

from credit_risk import model_store
from credit_risk.decisions import DecisionRule
from credit_risk.policy import ScoreScaling
from credit_risk.training import flow as flow_module
from credit_risk.training.data import DEFAULT_DATA_PATH, DataError, load_dataset
from credit_risk.training.estimators import QUICK_BUDGET
from credit_risk.training.flow import (
    DEPLOYMENT_NAME,
    MONTHLY_CRON,
    monthly_deployment,
    training_flow,
)
from credit_risk.training.gates import GateFailedError, GateSettings
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.tracking import BENTOML_TAG_KEY, FITTED_TAG, PARENT_TAG
from tests.conftest import store_at

pytestmark = pytest.mark.integration

ORDER = ["load", "split", "candidate", "select", "evaluate", "gates", "register", "save", "link"]


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    """Prefect's test harness: a temporary server and database for this module."""
    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture
def stores(model_tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh MLflow SQLite store, Prefect result storage (the candidate cache) and BentoML
    model store (holding the session's model, the champion a run is compared with) per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}),
        store_at(tmp_path / "bentoml", model_tag),
    ):
        yield tmp_path


def _task_runs(flow_run_id: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(runs, key=lambda r: r.start_time or r.expected_start_time)


def _stored_models() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list(model_store.MODEL_NAME)}


@pytest.fixture
def run(stores: Path) -> dict[str, Any]:
    """One quick flow run of the scorecard family into the temporary stores."""
    return training_flow(model="logreg", seed=3, quick=True, report_dir=str(stores / "reports"))


def test_tasks_run_in_order_and_everything_links(run: dict[str, Any], stores: Path) -> None:
    names = [r.name.rsplit("-", 1)[0] for r in _task_runs(run["prefect_flow_run_id"])]
    assert names[-1] == "report"
    assert [n for i, n in enumerate(names[:-1]) if i == 0 or n != names[i - 1]] == ORDER
    assert all(r.state.is_completed() for r in _task_runs(run["prefect_flow_run_id"]))

    client = MlflowClient()
    parent = client.get_run(run["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data_sha256"] == load_dataset().sha256
    assert parent.data.params["estimator"] == "logreg"
    assert parent.data.params["param_C"] == str(QUICK_BUDGET.logreg_grid[0]["C"])
    for metric in ("held_out_roc_auc", "held_out_gini", "held_out_ks", "held_out_brier"):
        assert metric in parent.data.metrics
    for metric in ("held_out_log_loss", "held_out_expected_cost", "protocol_roc_auc_std"):
        assert metric in parent.data.metrics
    assert parent.data.metrics["protocol_roc_auc_mean"] == run["cv"]["roc_auc"]["mean"]
    assert parent.data.tags["gate_auc_floor"] == "passed"

    nested = client.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{run['mlflow_run_id']}'"
    )
    assert len(nested) == len(QUICK_BUDGET.logreg_grid)
    assert {r.data.tags[FITTED_TAG] for r in nested} == {"true"}
    assert all("cv_roc_auc_mean" in r.data.metrics for r in nested)

    artifacts = {a.path for a in client.list_artifacts(run["mlflow_run_id"], "report")}
    for name in ("training.json", "training.png", "scorecard.csv", "scorecard.md"):
        assert f"report/{name}" in artifacts
    assert {"report/fairness.json", "report/fairness.md"} <= artifacts

    version = client.get_model_version("credit_risk", run["mlflow_model_version"])
    assert version.run_id == run["mlflow_run_id"]
    assert version.tags[BENTOML_TAG_KEY] == run["tag"]
    info = mlflow.models.get_model_info(f"models:/credit_risk/{version.version}")
    assert info.signature is not None
    assert info.saved_input_example_info is not None

    metadata = bentoml.models.get(run["tag"]).info.metadata
    assert metadata["mlflow_run_id"] == run["mlflow_run_id"]
    assert metadata["mlflow_model_version"] == run["mlflow_model_version"]
    assert [g["name"] for g in metadata["quality_gates"]] == [g["name"] for g in run["gates"]]


def test_fairness_recomputed_from_data_and_served_decisions(run: dict[str, Any]) -> None:
    """Independently: raw CSV columns, sklearn's split, the served scorer and decision rule."""
    with DEFAULT_DATA_PATH.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    bad = np.array([r["creditability"] == "bad" for r in rows])
    held_out = train_test_split(
        np.arange(len(rows)), test_size=0.2, stratify=bad.astype(int), random_state=3
    )[1]
    served = model_store.load_serving_model(run["tag"])
    codes = encode_frame(load_dataset().X)[held_out]
    rule = DecisionRule(
        served.metadata["threshold"],
        ScoreScaling.from_metadata(served.metadata["score_scaling"]),
        served.tag,
    )
    approved = [r["decision"] == "approve" for r in rule.records(*served.scorer.predict(codes))]
    groups = {
        "sex": [rows[i]["personal_status_and_sex"].split(" : ")[0] for i in held_out],
        "age_band": [_band(int(rows[i]["age_in_years"])) for i in held_out],
    }
    for attribute, labels in groups.items():
        reported = {g["group"]: g for g in run["fairness"]["attributes"][attribute]["groups"]}
        rates = {}
        for label in set(labels):
            member = [k for k, g in enumerate(labels) if g == label]
            ok = [k for k in member if approved[k]]
            rates[label] = len(ok) / len(member)
            assert reported[label]["applicants"] == len(member)
            assert reported[label]["approval_rate"] == pytest.approx(rates[label])
            assert reported[label]["bad_rate_among_approved"] == pytest.approx(
                sum(bad[held_out[k]] for k in ok) / len(ok)
            )
        ratio = min(rates.values()) / max(rates.values())
        assert run["fairness"]["attributes"][attribute]["adverse_impact_ratio"] == pytest.approx(
            ratio
        )


def _band(age: int) -> str:
    if age < 25:
        return "under 25"
    if age < 35:
        return "25-34"
    return "35-49" if age < 50 else "50 and over"


def test_failing_gate_fails_the_run_and_saves_nothing(stores: Path) -> None:
    before = _stored_models()
    state = training_flow(
        model="logreg",
        seed=5,
        quick=True,
        report_dir=str(stores / "reports"),
        gates=GateSettings(auc_floor=0.99),
        return_state=True,
    )
    assert state.is_failed()
    assert "gate auc_floor failed: protocol ROC AUC 0.7" in state.message
    assert "(at least 0.99)" in state.message
    with pytest.raises(GateFailedError, match="auc_floor"):
        state.result()
    assert _stored_models() == before
    client = MlflowClient()
    assert client.search_registered_models() == []
    (failed,) = client.search_runs(
        [client.get_experiment_by_name("credit_risk").experiment_id],
        "tags.gate_auc_floor = 'failed'",
    )
    assert failed.info.status == "FAILED"
    assert failed.data.metrics["gate_auc_floor"] < 0.99
    assert not (stores / "reports").exists()


def test_rerun_after_a_failed_last_task_reuses_the_candidates(
    stores: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits: list[str] = []
    real = flow_module.score_candidate

    def counted(family: str, *args: Any, **kwargs: Any) -> Any:
        fits.append(family)
        return real(family, *args, **kwargs)

    monkeypatch.setattr(flow_module, "score_candidate", counted)
    blocker = stores / "not-a-directory"
    blocker.write_text("the report cannot be written under a file\n")
    state = training_flow(seed=9, quick=True, report_dir=str(blocker), return_state=True)
    assert state.is_failed()
    tasks = _task_runs(str(state.state_details.flow_run_id))
    assert tasks[-1].name.startswith("report")
    assert tasks[-1].state.is_failed()
    assert sorted(fits) == ["hgb", "logreg"]

    fits.clear()
    again = training_flow(seed=9, quick=True, report_dir=str(stores / "reports"))
    assert fits == []
    assert again["candidates"] == {"fitted": 0, "from_cache": 2}
    client = MlflowClient()
    nested = client.search_runs(
        [client.get_experiment_by_name("credit_risk").experiment_id],
        f"tags.`{PARENT_TAG}` = '{again['mlflow_run_id']}'",
    )
    assert {r.data.tags[FITTED_TAG] for r in nested} == {"false"}
    assert json.loads((stores / "reports" / "training.json").read_text())["tag"] == again["tag"]


def test_bad_data_fails_in_the_first_task_with_the_loader_message(stores: Path) -> None:
    rows = DEFAULT_DATA_PATH.read_text().splitlines()
    bad = stores / "bad.csv"
    bad.write_text("\n".join([rows[0], rows[1].replace(",6,", ",six,", 1), *rows[2:]]) + "\n")
    with pytest.raises(DataError) as expected:
        load_dataset(bad)
    state = training_flow(data_path=str(bad), quick=True, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError) as raised:
        state.result()
    assert str(raised.value) == str(expected.value)
    assert "row 2" in str(raised.value)
    tasks = _task_runs(str(state.state_details.flow_run_id))
    assert [t.name.rsplit("-", 1)[0] for t in tasks] == ["load"]
    assert tasks[0].state.is_failed()


def test_monthly_deployment_is_created_with_its_schedule() -> None:
    deployment_id = monthly_deployment(quick=True).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == DEPLOYMENT_NAME
    assert deployment.parameters == {"quick": True}
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == MONTHLY_CRON
    assert schedule.active
