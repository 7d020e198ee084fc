"""The scorecard table: its points reproduce the service's score for sampled applicants."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from credit_risk import model_store
from credit_risk.decisions import DecisionRule
from credit_risk.policy import ScoreScaling, risk_bands
from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training.data import load_dataset
from credit_risk.training.preprocessing import encode_frame
from credit_risk.training.run import TrainingResult, split, train
from credit_risk.training.scorecard_table import (
    BASE_ROW,
    scorecard_rows,
    to_csv,
    to_markdown,
)
from tests.conftest import store_at

SEED = 7


@pytest.fixture(scope="module")
def store(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store of this module's own: the model it saves never becomes the session's `latest`."""
    with store_at(tmp_path_factory.mktemp("scorecard-store")) as home:
        yield home


@pytest.fixture(scope="module")
def scorecard(store: Path) -> tuple[TrainingResult, str]:
    result = train(model="logreg", seed=SEED, quick=True, progress=lambda _m: None)
    tag = model_store.save_model(
        result.pipeline, result.metadata, result.labels, check_codes=result.check_codes
    )
    return result, str(tag)


@pytest.fixture(scope="module")
def table(scorecard: tuple[TrainingResult, str]) -> list[dict[str, str]]:
    result, _ = scorecard
    dataset = load_dataset()
    data = split(encode_frame(dataset.X), dataset.y, SEED)
    scaling = ScoreScaling.from_metadata(result.metadata["score_scaling"])
    rows = scorecard_rows(result.pipeline, data.X_train, data.y_train, scaling)
    return list(csv.DictReader(io.StringIO(to_csv(rows))))


def _points(row: dict[str, Any], table: list[dict[str, str]]) -> float:
    """Base points plus, per characteristic, the one table row the applicant falls in."""
    total = float(next(r for r in table if r["characteristic"] == BASE_ROW)["points"])
    for name in FEATURES:
        (match,) = [
            r
            for r in table
            if r["characteristic"] == name
            and (
                r["bin"] == str(row[name])
                if name in CATEGORIES
                else (r["lower"] == "" or float(r["lower"]) <= row[name])
                and (r["upper"] == "" or row[name] < float(r["upper"]))
            )
        ]
        total += float(match["points"])
    return total


def test_points_reproduce_the_served_score(
    scorecard: tuple[TrainingResult, str], table: list[dict[str, str]]
) -> None:
    _, tag = scorecard
    served = model_store.load_serving_model(tag)
    frame = load_dataset().X
    sample = np.random.default_rng(0).choice(len(frame), size=60, replace=False)
    applicants = frame.iloc[sample]
    rule = DecisionRule(
        served.metadata["threshold"],
        ScoreScaling.from_metadata(served.metadata["score_scaling"]),
        served.tag,
    )
    probability, excess = served.scorer.predict(encode_frame(applicants))
    decisions = rule.records(probability, excess)
    exact = rule.scaling.score(probability)
    for k, (_, row) in enumerate(applicants.iterrows()):
        points = _points(row.to_dict(), table)
        assert points == pytest.approx(exact[k], abs=1e-6)
        assert round(points) == decisions[k]["score"]
        assert decisions[k]["risk_band"] == risk_bands(np.array([round(points)]))[0]


def test_counts_bad_rates_and_information_value(
    scorecard: tuple[TrainingResult, str], table: list[dict[str, str]]
) -> None:
    result, _ = scorecard
    dataset = load_dataset()
    data = split(encode_frame(dataset.X), dataset.y, SEED)
    woe = result.pipeline.named_steps["woe"]
    iv = woe.information_value(data.X_train, data.y_train)
    for j, name in enumerate(FEATURES):
        rows = [r for r in table if r["characteristic"] == name]
        assert sum(int(r["count"]) for r in rows) == len(data.y_train)
        assert [float(r["information_value"]) for r in rows] == pytest.approx([iv[j]] * len(rows))
        if name in CATEGORIES:
            assert [r["bin"] for r in rows] == list(CATEGORIES[name])
    checking = [r for r in table if r["characteristic"] == "checking_account"]
    column = data.X_train[:, FEATURES.index("checking_account")]
    for code, row in enumerate(checking):
        member = column == code
        assert int(row["count"]) == int(member.sum())
        if member.any():
            assert float(row["bad_rate"]) == pytest.approx(data.y_train[member].mean())


def test_markdown_has_a_row_per_bin(table: list[dict[str, str]]) -> None:
    numbers = ("bad_rate", "woe", "points", "information_value")
    rows = [{k: float(v) if k in numbers and v else v for k, v in r.items()} for r in table]
    lines = to_markdown(rows).strip().splitlines()
    assert len(lines) == 2 + len(table) + 2  # the table, a blank line, the band rule
    assert lines[-1].startswith("Score shown = base points")
    assert "A from 580" in lines[-1]
    assert lines[3].startswith("| checking_account | below_0 |")
    assert not any(math.isnan(float(r["points"])) for r in table)


def test_a_boosted_model_has_no_points_table() -> None:
    result = train(model="hgb", seed=SEED, quick=True, progress=lambda _m: None)
    dataset = load_dataset()
    data = split(encode_frame(dataset.X), dataset.y, SEED)
    with pytest.raises(TypeError, match="only a WoE"):
        scorecard_rows(result.pipeline, data.X_train, data.y_train, ScoreScaling())
