"""The champion gate on tiny real models in a store of the test's own: it scores the served
champion as stored, fails a weakened candidate, passes an equal one, and saves nothing when
it fails."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from credit_risk import model_store, promotion
from credit_risk.training import steps
from credit_risk.training.champion import NO_MODEL
from credit_risk.training.data import load_dataset
from credit_risk.training.gates import GateFailedError, GateResult
from credit_risk.training.holdout import held_out_rows, split
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.run import train, train_and_save
from tests.training.conftest import weakened_data


def _quiet(_message: str) -> None:
    pass


def _train(**kwargs: object) -> steps.TrainingResult:
    return train(quick=True, model="logreg", progress=_quiet, **kwargs)  # type: ignore[arg-type]


def _gate(result: steps.TrainingResult, name: str = "champion") -> GateResult:
    (gate,) = [g for g in result.verdicts.gates if g.name == name]
    return gate


def _promoted(seed: int = 42) -> str:
    tag = steps.save(_train(seed=seed))
    promotion.promote(tag, "champion", reason="the test's champion", who="test")
    return tag


def _stored() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list() if m.tag.name == model_store.MODEL_NAME}


def test_an_empty_store_skips_the_gate_and_says_why(fresh_store: Path) -> None:
    result = _train()
    gate = _gate(result)
    assert gate.status == "skipped"
    assert gate.description == NO_MODEL
    assert result.report["champion_comparison"] == {
        "outcome": "no_champion",
        "reason": NO_MODEL,
        "verdict": "skipped",
    }
    assert _gate(result, "stability").status == "skipped"
    result.verdicts.enforce()


@pytest.mark.parametrize("how", ["shuffled", "one-field"])
def test_a_weakened_candidate_fails_and_nothing_is_saved(
    fresh_store: Path, tmp_path: Path, how: str
) -> None:
    champion = _promoted()
    before = _stored()
    weak = weakened_data(tmp_path / f"{how}.csv", how)
    with pytest.raises(GateFailedError, match="gate champion failed") as failed:
        train_and_save(weak, "logreg", quick=True, quiet=True, report_dir=tmp_path / "reports")
    assert f"for champion {champion} on 200 rows" in str(failed.value)
    assert "90 % CI [" in str(failed.value)
    assert _stored() == before
    assert not (tmp_path / "reports").exists()

    comparison = _train(data_path=weak).report["champion_comparison"]
    assert comparison["outcome"] == "compared"
    assert comparison["verdict"] == "failed"
    assert comparison["champion"] == champion
    low, high = comparison["interval"]
    assert low < comparison["difference"] < high < -0.01
    assert comparison["candidate_roc_auc"] < comparison["champion_roc_auc"] - 0.1


def test_an_equal_candidate_passes(fresh_store: Path) -> None:
    champion = _promoted()
    result = _train()  # same data, seed and configuration: the same model
    comparison = result.report["champion_comparison"]
    assert comparison["champion"] == champion
    assert comparison["difference"] == 0.0
    assert comparison["interval"] == [0.0, 0.0]
    assert comparison["rows_note"] == "neither model was trained on any of them"
    assert comparison["verdict"] == _gate(result).status == "passed"
    result.verdicts.enforce()


def test_the_gate_scores_the_promoted_champion_not_the_newest_model(fresh_store: Path) -> None:
    champion = _promoted()
    newer = steps.save(_train(seed=7))
    assert str(bentoml.models.get("credit_risk:latest").tag) == newer != champion

    result = _train()
    comparison = result.report["champion_comparison"]
    assert comparison["champion"] == champion
    assert comparison["champion_source"] == "promotion state"
    # independently: the stored champion's own scorer on the held-out rows
    dataset = load_dataset()
    held_out = split(encode_frame(dataset.X), dataset.y, 42)
    stored = model_store.load_serving_model(champion).scorer.predict(held_out.X_test)[0]
    assert comparison["champion_roc_auc"] == pytest.approx(roc_auc_score(held_out.y_test, stored))
    assert _gate(result).passed


def test_rows_the_champion_was_trained_on_are_left_out(fresh_store: Path) -> None:
    _promoted(seed=7)
    comparison = _train(seed=42).report["champion_comparison"]
    y = load_dataset().y
    unseen = np.isin(held_out_rows(y, 42), held_out_rows(y, 7))
    assert comparison["rows"] == int(unseen.sum()) < 200
    assert comparison["bad"] == int(y[held_out_rows(y, 42)][unseen].sum())
    assert (
        f"the {200 - comparison['rows']} held-out rows the champion was trained on"
        in (comparison["rows_note"])
    )


def test_a_champion_that_cannot_be_scored_is_named_and_the_gate_skipped(
    fresh_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serving could not load it either: the retraining that replaces it is not blocked."""
    steps.save(_train())
    monkeypatch.setenv(model_store.MODEL_ENV, "credit_risk:gone")
    result = _train()
    gate = _gate(result)
    assert gate.status == "skipped"
    assert "no comparison: champion (pinned by CREDIT_RISK_MODEL)" in gate.description
    assert "'credit_risk:gone' not found" in gate.description
    assert result.report["champion_comparison"]["outcome"] == "unusable"
    result.verdicts.enforce()


def test_skipped_gates_save_and_the_metadata_says_so(fresh_store: Path, tmp_path: Path) -> None:
    _promoted()
    weak = weakened_data(tmp_path / "weak.csv", "shuffled")
    tag = train_and_save(
        weak, "logreg", quick=True, quiet=True, skip_gates=True, report_dir=tmp_path / "r"
    )
    model = bentoml.models.get(tag)
    assert model.info.labels["quality_gates"] == "skipped"
    metadata = model.info.metadata
    assert metadata["quality_gates_skipped"] is True
    gates = {g["name"]: g for g in metadata["quality_gates"]}
    assert gates["champion"]["status"] == "failed"
    assert metadata["champion_comparison"]["difference"] < -0.1
    markdown = (tmp_path / "r" / "training.md").read_text()
    assert "SKIPPED with --skip-gates" in markdown
    assert "| champion | failed |" in markdown
