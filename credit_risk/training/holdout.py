"""The held-out split: the rows a model is measured on and never trained on.

A stratified split depends only on the outcomes, the row count and the seed, so the held-out
rows of any model trained by this code on a known file and seed can be recomputed: the champion
gate uses that to compare two models only on rows neither was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from sklearn.model_selection import train_test_split

from credit_risk.arrays import FloatArray, IntArray

TEST_FRACTION: Final = 0.2
"""Held-out share: a stratified 20 % split."""


@dataclass(frozen=True)
class Split:
    """The code arrays of the training split and the held-out split."""

    X_train: FloatArray
    X_test: FloatArray
    y_train: IntArray
    y_test: IntArray


def split(codes: FloatArray, y: IntArray, seed: int) -> Split:
    """The stratified held-out split of a code array."""
    X_train, X_test, y_train, y_test = train_test_split(  # noqa: N806
        codes, y, test_size=TEST_FRACTION, stratify=y, random_state=seed
    )
    return Split(X_train, X_test, y_train, y_test)


def held_out_rows(y: IntArray, seed: int) -> IntArray:
    """Row numbers of the held-out split: `split` applied to the row numbers themselves."""
    rows = split(np.arange(len(y), dtype=np.float64)[:, np.newaxis], y, seed)
    return rows.X_test[:, 0].astype(np.int_)
