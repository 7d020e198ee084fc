"""Training: pipeline contract, determinism, scorecard binning, report files, CLI errors."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from credit_risk.cli import EXIT_BAD_INPUT, TRAINING_MISSING
from credit_risk.policy import ScoreScaling
from credit_risk.schema import FEATURES, NUMERIC_FEATURES
from credit_risk.training.data import DEFAULT_DATA_PATH, load_dataset
from credit_risk.training.estimators import FULL_BUDGET, QUICK_BUDGET, build_pipeline
from credit_risk.training.evaluation import choose_threshold
from credit_risk.training.preprocessing import SchemaEncoder, WoEEncoder, encode_frame
from credit_risk.training.report import render_table
from credit_risk.training.run import TrainingResult, train, train_and_save
from credit_risk.training.validation import out_of_fold
from tests.conftest import ROOT
from tests.training.test_flow_cli import _guarded_env


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def quick_result() -> TrainingResult:
    return train(quick=True, seed=7, progress=_quiet)


def test_pipeline_step_names_are_the_serving_contract() -> None:
    logreg = build_pipeline("logreg", QUICK_BUDGET.logreg_grid[0])
    assert [name for name, _ in logreg.steps] == ["encode", "woe", "clf"]
    assert isinstance(logreg.named_steps["encode"], SchemaEncoder)
    assert isinstance(logreg.named_steps["woe"], WoEEncoder)
    assert isinstance(logreg.named_steps["clf"], LogisticRegression)
    hgb = build_pipeline("hgb", QUICK_BUDGET.hgb_grid[0])
    assert [name for name, _ in hgb.steps] == ["encode", "clf"]
    assert isinstance(hgb.named_steps["clf"], HistGradientBoostingClassifier)
    with pytest.raises(ValueError, match="unknown estimator family"):
        build_pipeline("forest", {})


def test_same_seed_same_model(quick_result: TrainingResult) -> None:
    again = train(quick=True, seed=7, progress=_quiet)
    for key in ("threshold", "metrics", "cv", "model_search", "training_distribution"):
        assert again.metadata[key] == quick_result.metadata[key], key
    frame = load_dataset().X
    np.testing.assert_array_equal(
        again.pipeline.predict_proba(frame), quick_result.pipeline.predict_proba(frame)
    )
    np.testing.assert_array_equal(again.curves.p_oof, quick_result.curves.p_oof)


def test_another_seed_splits_differently(quick_result: TrainingResult) -> None:
    other = train(quick=True, seed=8, progress=_quiet, model="logreg")
    assert not np.array_equal(other.curves.p_test, quick_result.curves.p_test)


def test_threshold_minimises_out_of_fold_cost(quick_result: TrainingResult) -> None:
    meta = quick_result.metadata
    assert meta["threshold"] == choose_threshold(
        quick_result.curves.y_oof, quick_result.curves.p_oof
    )
    assert 0.0 < meta["threshold"] < 0.5  # bad approved costs 5x good declined


def test_metadata_is_complete_and_plain(quick_result: TrainingResult) -> None:
    meta = quick_result.metadata
    json.dumps(meta)
    assert meta["features"] == list(FEATURES)
    assert meta["estimator"] in {"logreg", "hgb"}
    assert meta["estimator_params"]["searched"] == quick_result.report["model_search"][0]["params"]
    held = meta["metrics"]["held_out"]
    assert held["n"] == 200
    assert held["gini"] == pytest.approx(2 * held["roc_auc"] - 1)
    assert sum(held["confusion"].values()) == 200
    assert meta["cv"]["roc_auc"]["n"] == QUICK_BUDGET.protocol_repeats
    assert meta["trained_at"].endswith("+00:00")
    assert {"scikit-learn", "bentoml", "numpy"} <= set(meta["library_versions"])
    assert len(meta["reference_codes"]) == len(FEATURES)
    labels = quick_result.labels
    assert labels == {
        "estimator": meta["estimator"],
        "stage": "dev",
        "owner": "credit-risk",
        "quality_gates": "enforced",
    }
    assert meta["quality_gates_skipped"] is False
    assert [g["name"] for g in meta["quality_gates"]] == [
        "auc_floor",
        "champion",
        "brier",
        "calibration",
        "stability",
        "fairness",
    ]


def test_training_distribution_is_a_usable_reference(quick_result: TrainingResult) -> None:
    dist = quick_result.metadata["training_distribution"]
    assert dist["rows"] == 800
    assert set(dist["numeric"]) == set(NUMERIC_FEATURES)
    for summary in [dist["score"], dist["probability_of_default"], *dist["numeric"].values()]:
        assert len(summary["proportions"]) == len(summary["edges"]) + 1
        assert sum(summary["proportions"]) == pytest.approx(1.0, abs=1e-5)
    for shares in dist["categorical"].values():
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    # score deciles: roughly ten equal bins of training rows
    assert len(dist["score"]["proportions"]) == 10
    assert max(dist["score"]["proportions"]) < 0.15


def test_score_scaling_is_stored_and_anchored(quick_result: TrainingResult) -> None:
    scaling = ScoreScaling.from_metadata(quick_result.metadata["score_scaling"])
    assert scaling == ScoreScaling()
    p_at_50_to_1 = 1 / 51
    assert scaling.score(np.array([p_at_50_to_1]))[0] == pytest.approx(600.0)
    # doubling the good:bad odds (100:1) adds PDO = 20 points
    assert scaling.score(np.array([1 / 101]))[0] == pytest.approx(620.0)
    assert quick_result.metadata["score_scaling"]["factor"] == pytest.approx(20 / math.log(2))


def test_woe_binning_keeps_its_shapes() -> None:
    ds = load_dataset()
    codes = encode_frame(ds.X)
    woe = WoEEncoder().fit(codes, ds.y)
    assert len(woe.edges_) == len(woe.woe_) == len(FEATURES)
    for j, name in enumerate(FEATURES):
        edges = woe.edges_[j]
        if edges is None:
            continue
        assert np.all(np.diff(edges) > 0), name
        idx = np.searchsorted(edges, codes[:, j], side="right")
        counts = np.bincount(idx, minlength=len(edges) + 1)
        assert counts.min() >= 0.05 * len(codes), name  # no sliver bins
        steps = np.sign(np.diff(woe.woe_[j]))
        steps = steps[steps != 0]
        turns = int(np.count_nonzero(np.diff(steps)))
        assert turns <= (1 if name in woe.u_shaped else 0), name
    # longer loans carry more risk: WoE (log good:bad odds) falls with the term
    duration = woe.woe_[FEATURES.index("duration_months")]
    assert duration[0] > duration[-1]
    np.testing.assert_array_equal(woe.transform(codes), woe.transform(codes.copy()))


def test_woe_of_sparse_bins_shrinks_toward_zero() -> None:
    codes = np.zeros((200, len(FEATURES)))
    y = np.r_[np.zeros(140, dtype=int), np.ones(60, dtype=int)]
    purpose = FEATURES.index("purpose")
    codes[0, purpose] = 9  # one good applicant alone in 'others'
    woe = WoEEncoder(u_shaped=()).fit(codes, y)
    lone = woe.woe_[purpose][9]
    assert 0 < lone < 0.5  # one good applicant is a little evidence, not a lot
    assert woe.woe_[purpose][5] == 0.0  # never seen: no evidence


def test_woe_rejects_u_shape_on_a_category() -> None:
    ds = load_dataset()
    with pytest.raises(ValueError, match="non-numeric"):
        WoEEncoder(u_shaped=("purpose",)).fit(encode_frame(ds.X), ds.y)


def test_out_of_fold_predictions_never_see_their_row() -> None:
    # On labels that are pure noise, a model that saw a row's label "predicts" it (in-sample
    # ROC AUC well above 0.5); predictions from models that never saw the row have no skill.
    ds = load_dataset()
    codes = encode_frame(ds.X)[:300]
    noise = np.random.default_rng(0).permutation(ds.y[:300])
    for family, params in (
        ("logreg", QUICK_BUDGET.logreg_grid[0]),
        ("hgb", QUICK_BUDGET.hgb_grid[0]),
    ):
        oof = out_of_fold(family, params, codes, noise, folds=5, seed=0)
        fitted = build_pipeline(family, params).fit(codes, noise)
        in_sample = roc_auc_score(noise, fitted.predict_proba(codes)[:, 1])
        assert oof.shape == (300,)
        assert in_sample > 0.7, f"{family}: the check could not see a leak"
        assert 0.35 < roc_auc_score(noise, oof) < 0.65, f"{family}: out-of-fold has skill on noise"


def test_train_and_save_writes_the_report(tmp_path: Path, own_store: Path) -> None:
    tag = train_and_save(quick=True, report_dir=tmp_path, quiet=True)
    report = json.loads((tmp_path / "training.json").read_text())
    assert report["tag"] == str(tag)
    assert "reference_codes" not in report
    image = np.asarray(Image.open(tmp_path / "training.png").convert("L"), dtype=float)
    assert image.shape == (500, 1200), "12 x 5 inches at 100 dpi"
    left, right = image[:, :600], image[:, 600:]
    for panel in (left, right):  # the ROC curves and the score histogram, each drawn
        assert (panel < 128).mean() > 0.01, "a panel is blank"
    # the histogram's filled bars cover far more of its panel than the ROC's lines do
    drawn = (right < 250) & (right > 5)
    assert drawn.mean() > ((left < 250) & (left > 5)).mean()


def test_report_table_aligns_its_lists_and_prices_the_no_model_policies(
    quick_result: TrainingResult,
) -> None:
    # the full search's lists: parameters of both families, strings of different widths
    spread = {"mean": 0.75, "std": 0.01, "n": 5}
    entries = [
        {"estimator": "logreg", "params": FULL_BUDGET.logreg_grid[0]},
        {"estimator": "hgb", "params": FULL_BUDGET.hgb_grid[-1]},
        {"estimator": "hgb", "params": {**FULL_BUDGET.hgb_grid[0], "learning_rate": 0.125}},
    ]
    report = {
        **quick_result.report,
        "tag": "credit_risk:test",
        "cv": {
            **quick_result.report["cv"],
            "baselines": [
                {**e, "roc_auc": spread, "expected_cost_at_bayes_threshold": spread}
                for e in entries
            ],
        },
        "model_search": [{**e, "roc_auc": spread} for e in entries],
    }
    table = render_table(report)
    held = report["metrics"]["held_out"]
    for label, key in (
        ("declining everyone instead", "expected_cost_decline_all"),
        ("approving everyone instead", "expected_cost_approve_all"),
    ):
        (line,) = [row for row in table.splitlines() if label in row]
        assert line.rstrip().endswith(f"{held[key]:.4f}")
    assert held["expected_cost"] < min(
        held["expected_cost_decline_all"], held["expected_cost_approve_all"]
    ), "the model costs less than either policy without one"
    lists = table.split("baselines under the same protocol:")[1]
    baselines, search = lists.split("model search")
    families = set()
    for block, column in ((baselines, "ROC AUC"), (search, " ± ")):
        rows = [r for r in block.splitlines() if r.startswith("    ") and column in r]
        families |= {r.split()[0] for r in rows}
        starts = {r.index(column) for r in rows}
        assert len(rows) == len(entries)
        assert len(starts) == 1, f"misaligned figures:\n{block}"
    assert {"logreg", "hgb"} <= families, "both families in the lists"


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("credit_amount,", "amount,", r"row 1 \(header\): missing column\(s\) 'credit_amount'"),
        ("radio/television", "spaceship", r"row 2, column 'purpose': unknown category"),
        (",1169,", ",lots,", r"row 2, column 'credit_amount': 'lots' is not a number"),
    ],
    ids=["missing-column", "unknown-category", "non-numeric"],
)
def test_cli_reports_bad_csv_in_one_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = DEFAULT_DATA_PATH.read_text(encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = _run_cli("--data", str(bad), "--report-dir", str(tmp_path), home=tmp_path / "home")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(bad) in lines[0]
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "home" / "models" / "credit_risk").exists()


def test_cli_rejects_an_unknown_model_family(tmp_path: Path) -> None:
    result = _run_cli("--model", "forest", home=tmp_path / "home")
    assert result.returncode == 2
    assert "'forest' is not one of 'auto', 'logreg', 'hgb'" in result.stderr


@pytest.mark.parametrize(
    ("command", "blocked"),
    [
        (["credit-risk", "train"], "sklearn"),
        (["train.py"], "pandas"),
        (["train.py"], "matplotlib"),
    ],
    ids=["credit-risk-train-no-sklearn", "train.py-no-pandas", "train.py-no-matplotlib"],
)
def test_cli_without_the_training_extra_says_how_to_install(
    tmp_path: Path, command: list[str], blocked: str
) -> None:
    """The runtime lock has no scikit-learn, pandas or matplotlib: one line naming the extra."""
    env = _guarded_env(tmp_path, GUARD_BLOCK_MODULES=blocked)
    probe = subprocess.run(
        [sys.executable, "-c", f"import {blocked}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"No module named '{blocked}'" in probe.stderr
    if command[0] == "train.py":
        args = [sys.executable, str(ROOT / "train.py")]
    else:
        args = [str(Path(sys.executable).parent / command[0]), *command[1:]]
    args += ["--quick", "--report-dir", str(tmp_path / "reports")]
    result = subprocess.run(
        args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [f"Error: {TRAINING_MISSING}"]
    assert "pip install 'credit-risk-bento[training]'" in TRAINING_MISSING
    assert result.stdout == ""
    assert not (tmp_path / "bentoml" / "models").exists()
    assert not (tmp_path / "reports").exists()
