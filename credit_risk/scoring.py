"""From probability of default to what a lender acts on: score points, risk band, decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EPS: Final = 1e-12
"""Clip for probabilities before taking logs: keeps the score finite at p = 0 or 1."""


@dataclass(frozen=True)
class ScoreScaling:
    """Scorecard points: `score = offset - factor * ln(odds_bad)`, `factor = pdo / ln 2`.

    The common convention (DESIGN.md): 600 points at good:bad odds of 50:1, 20 points to
    double the odds. Stored with each model so a served score never drifts from training.
    """

    base_score: float = 600.0
    base_odds_good_to_bad: float = 50.0
    pdo: float = 20.0

    @property
    def factor(self) -> float:
        """Points per unit of log-odds."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """Score at odds_bad = 1 (log-odds 0)."""
        return self.base_score - self.factor * math.log(self.base_odds_good_to_bad)

    def as_metadata(self) -> dict[str, float]:
        """Plain numbers for the model store (offset and factor included for readers)."""
        return {**asdict(self), "offset": self.offset, "factor": self.factor}

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> ScoreScaling:
        """Inverse of `as_metadata`; ignores the derived keys."""
        return cls(
            base_score=float(data["base_score"]),
            base_odds_good_to_bad=float(data["base_odds_good_to_bad"]),
            pdo=float(data["pdo"]),
        )

    def score(self, probability_of_default: FloatArray) -> FloatArray:
        """Points for each probability (higher = lower risk)."""
        p = np.clip(probability_of_default, EPS, 1 - EPS)
        result: FloatArray = self.offset - self.factor * np.log(p / (1 - p))
        return result
