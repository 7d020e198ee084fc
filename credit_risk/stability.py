"""Population stability: how far one population has moved from another, bin by bin.

PSI = sum over bins of (live% - train%) * ln(live% / train%). The usual reading (credit-risk
model monitoring practice): below 0.1 stable, 0.1 to 0.25 a shift worth a look, above 0.25 a
significant shift (review the model). Bins are the training distribution's own, stored in the
model's metadata by training; serving watches live traffic with them (`serving.drift`) and the
retraining pipeline compares a new training population with the previous model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from credit_risk.arrays import FloatArray
from credit_risk.schema import CATEGORIES

PSI_WATCH: Final = 0.1
"""PSI above which a shift is worth a look."""
PSI_ALERT: Final = 0.25
"""PSI above which the population has shifted significantly: review or retrain."""

PROPORTION_FLOOR: Final = 1e-4
"""Stands in for an empty bin so ln() stays finite (a common PSI convention)."""


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI between two distributions over the same bins (proportions or counts)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.maximum(e / e.sum(), PROPORTION_FLOOR)
    a = np.maximum(a / max(a.sum(), 1.0), PROPORTION_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Signal:
    """One monitored quantity: how to bin it and its training proportions per bin."""

    name: str
    edges: FloatArray | None  # None: the value is a category code, its own bin
    expected: FloatArray

    def bins(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """Bin index of each value."""
        if self.edges is None:
            return values.astype(np.intp)
        return np.searchsorted(self.edges, values, side="right")


def signals_from_metadata(distribution: dict[str, Any]) -> list[Signal]:
    """The score, every numeric feature and every categorical feature, as training saw them."""
    out = [
        Signal(
            "score",
            np.asarray(distribution["score"]["edges"], dtype=np.float64),
            np.asarray(distribution["score"]["proportions"], dtype=np.float64),
        )
    ]
    for name, summary in distribution.get("numeric", {}).items():
        out.append(
            Signal(
                name,
                np.asarray(summary["edges"], dtype=np.float64),
                np.asarray(summary["proportions"], dtype=np.float64),
            )
        )
    for name, shares in distribution.get("categorical", {}).items():
        out.append(
            Signal(name, None, np.asarray([shares[c] for c in CATEGORIES[name]], np.float64))
        )
    return out
