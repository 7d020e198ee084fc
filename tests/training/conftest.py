"""Fixtures for training tests that write models: a model store of their own.

BentoML resolves its home once per process (its dependency container); `fresh_store` points
the container's home and model store at an empty temporary directory for one test, so a test
that saves or promotes models never moves `credit_risk:latest` of the session's store.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from credit_risk import model_store
from credit_risk.promotion import CHALLENGER_ENV
from credit_risk.training.data import DEFAULT_DATA_PATH, load_dataset
from credit_risk.training.holdout import held_out_rows
from tests.conftest import store_at

TARGET = "creditability"


@pytest.fixture
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty BentoML home (models and promotion state) for this test only; no pins."""
    monkeypatch.delenv(model_store.MODEL_ENV, raising=False)
    monkeypatch.delenv(CHALLENGER_ENV, raising=False)
    with store_at(tmp_path / "bentoml") as home:
        yield home


def weakened_data(path: Path, how: str, seed: int = 42) -> Path:
    """The shipped data with its training rows (for `seed`) spoilt, its held-out rows intact.

    A stratified split depends only on the outcomes, so the held-out rows stay the same rows:
    a model trained on this file is measured on exactly the applicants a model trained on the
    shipped file is. `shuffled`: the training rows' fields are permuted among them (as if
    their labels were shuffled); `one-field`: every field but `age_in_years` is the same for
    all training rows (as if the others had been dropped).
    """
    with DEFAULT_DATA_PATH.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    held_out = set(held_out_rows(load_dataset().y, seed).tolist())
    train = [i for i in range(len(rows)) if i not in held_out]
    target = header.index(TARGET)
    spoilt = [list(row) for row in rows]
    if how == "shuffled":
        donors = np.random.default_rng(0).permutation(train)
        for i, donor in zip(train, donors, strict=True):
            spoilt[i] = [*rows[donor][:target], rows[i][target], *rows[donor][target + 1 :]]
    elif how == "one-field":
        kept = {header.index("age_in_years"), target}
        for i in train:
            spoilt[i] = [v if j in kept else rows[train[0]][j] for j, v in enumerate(rows[i])]
    else:
        raise ValueError(how)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *spoilt])
    return path
