"""Population stability of live traffic against the training population, over a sliding
window of recent applicants (PSI and its reading: `credit_risk.stability`)."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from credit_risk.arrays import FloatArray
from credit_risk.schema import FEATURES
from credit_risk.stability import Signal, psi

DEFAULT_WINDOW: Final = 1000
"""Applicants in the sliding window: with ~10 bins, ~100 per bin keeps the PSI of a population
identical to training near 0.01-0.02 (sampling noise), far below the 0.1 watch level."""


class DriftMonitor:
    """A sliding window over the last `window` applicants, with a PSI per signal.

    Kept as per-bin counts (all signals' bins side by side in one array) plus a ring of bin
    indices, so each batch costs a few array operations whatever the number of signals, and a
    PSI read costs O(bins), whatever the window size.
    """

    def __init__(self, signals: list[Signal], window: int = DEFAULT_WINDOW) -> None:
        self.signals = signals
        self.window = window
        self._columns = [FEATURES.index(s.name) if s.name != "score" else -1 for s in signals]
        sizes = [len(s.expected) for s in signals]
        self._offsets = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        self._last = np.asarray(sizes, dtype=np.intp) - 1
        self._ring = np.zeros((window, len(signals)), dtype=np.intp)
        self._flat = np.zeros(sum(sizes), dtype=np.int64)
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
            new[:, k] = signal.bins(scores if column < 0 else codes[:, column])
        np.clip(new, 0, self._last, out=new)
        slots = (self._next + np.arange(n)) % self.window
        # slots that already hold an applicant: all once full, else those past the filled part
        evicted = slots[max(0, self.window - self.seen) :] if self.seen else slots[:0]
        size = len(self._flat)
        self._flat += np.bincount((new + self._offsets).ravel(), minlength=size)
        if len(evicted):
            gone = (self._ring[evicted] + self._offsets).ravel()
            self._flat -= np.bincount(gone, minlength=size)
        self._ring[slots] = new
        self._next = int((self._next + n) % self.window)
        self.seen += n

    @property
    def _counts(self) -> list[npt.NDArray[np.int64]]:
        return np.split(self._flat, self._offsets[1:])

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
