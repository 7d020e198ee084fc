"""Population stability of live traffic against the training population.

PSI = sum over bins of (live% - train%) * ln(live% / train%). The usual reading (credit-risk
model monitoring practice): below 0.1 stable, 0.1 to 0.25 a shift worth a look, above 0.25 a
significant shift (review the model). Bins are the training distribution's own, stored in the
model's metadata by training, so serving needs no training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from credit_risk.encoding import FloatArray
from credit_risk.schema import CATEGORIES, FEATURES

PSI_WATCH: Final = 0.1
"""PSI above which a shift is worth a look."""
PSI_ALERT: Final = 0.25
"""PSI above which the population has shifted significantly: review or retrain."""

DEFAULT_WINDOW: Final = 1000
"""Applicants in the sliding window: with ~10 bins, ~100 per bin keeps the PSI of a population
identical to training near 0.01-0.02 (sampling noise), far below the 0.1 watch level."""

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


class DriftMonitor:
    """A sliding window over the last `window` applicants, with a PSI per signal.

    Kept as per-bin counts plus a ring of bin indices, so each batch costs O(batch) and a PSI
    read costs O(bins), whatever the window size.
    """

    def __init__(self, signals: list[Signal], window: int = DEFAULT_WINDOW) -> None:
        self.signals = signals
        self.window = window
        self._columns = [FEATURES.index(s.name) if s.name != "score" else -1 for s in signals]
        self._ring = np.zeros((window, len(signals)), dtype=np.intp)
        self._counts = [np.zeros(len(s.expected), dtype=np.int64) for s in signals]
        self._next = 0
        self.seen = 0

    def observe(self, codes: FloatArray, scores: FloatArray) -> None:
        """Add a batch: rows of the code array and their scores."""
        codes, scores = codes[-self.window :], scores[-self.window :]
        n = len(scores)
        if n == 0:
            return
        new = np.empty((n, len(self.signals)), dtype=np.intp)
        for k, (signal, column) in enumerate(zip(self.signals, self._columns, strict=True)):
            values = scores if column < 0 else codes[:, column]
            new[:, k] = np.clip(signal.bins(values), 0, len(signal.expected) - 1)
        slots = (self._next + np.arange(n)) % self.window
        # slots that already hold an applicant: all once full, else those past the filled part
        evicted = slots[max(0, self.window - self.seen) :] if self.seen else slots[:0]
        for k, counts in enumerate(self._counts):
            np.subtract.at(counts, self._ring[evicted, k], 1)
            np.add.at(counts, new[:, k], 1)
        self._ring[slots] = new
        self._next = int((self._next + n) % self.window)
        self.seen += n

    @property
    def full(self) -> bool:
        """PSI is meaningful once the window holds `window` applicants."""
        return self.seen >= self.window

    def psi(self) -> dict[str, float]:
        """PSI per signal over the current window."""
        return {
            s.name: psi(s.expected, counts)
            for s, counts in zip(self.signals, self._counts, strict=True)
        }
