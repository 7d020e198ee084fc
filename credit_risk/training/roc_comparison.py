"""DeLong's test: is one model's ROC AUC on the same applicants above or below another's?

Two models scored on the same rows give correlated AUCs, so their difference has a smaller
variance than two independent AUCs would. DeLong, DeLong and Clarke-Pearson (1988, Biometrics
44(3), 837-845) estimate it without assumptions about the score distributions, from each
row's "structural component": for a bad applicant, the share of good applicants scored less
risky; for a good one, the share of bad applicants scored more risky. Computed here with
midranks (Sun and Xu 2014, IEEE Signal Processing Letters 21(11)), in O(n log n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.stats import norm, rankdata

from credit_risk.arrays import FloatArray

FEWEST_PER_CLASS: Final = 2
"""Each outcome needs two rows for its structural components to have a variance."""


@dataclass(frozen=True)
class AucDifference:
    """ROC AUC of model a and of model b on the same rows, and DeLong's standard error of a - b."""

    auc_a: float
    auc_b: float
    std_error: float
    bad: int
    good: int

    @property
    def difference(self) -> float:
        """AUC of a minus AUC of b."""
        return self.auc_a - self.auc_b

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided interval of the difference at `confidence` (normal approximation)."""
        half = float(norm.ppf(0.5 + confidence / 2)) * self.std_error
        return self.difference - half, self.difference + half

    def upper_bound(self, confidence: float) -> float:
        """The one-sided upper confidence bound of the difference at `confidence`."""
        return self.difference + float(norm.ppf(confidence)) * self.std_error

    def p_below(self, margin: float) -> float:
        """One-sided p-value of "the difference is at least -margin" (small: a is worse)."""
        shortfall = self.difference + margin
        if self.std_error == 0.0:
            return 0.0 if shortfall < 0 else 1.0
        return float(norm.cdf(shortfall / self.std_error))


def delong(y: npt.ArrayLike, p_a: npt.ArrayLike, p_b: npt.ArrayLike) -> AucDifference:
    """Both models' ROC AUC (higher P(bad) for bad applicants, 1 = bad) and the SE of a - b."""
    bad = np.asarray(y).astype(bool)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if min(n_bad, n_good) < FEWEST_PER_CLASS:
        msg = f"DeLong's test needs two bad and two good rows at least, not {n_bad} and {n_good}"
        raise ValueError(msg)
    scores: FloatArray = np.vstack([np.asarray(p_a, float), np.asarray(p_b, float)])
    ordered = np.hstack([scores[:, bad], scores[:, ~bad]])
    all_ranks = rankdata(ordered, axis=1)  # midranks: a tie counts one half each way
    bad_ranks = rankdata(scores[:, bad], axis=1)
    good_ranks = rankdata(scores[:, ~bad], axis=1)
    # per bad row: the share of good rows scored below it; per good row: of bad rows above it
    v_bad = (all_ranks[:, :n_bad] - bad_ranks) / n_good
    v_good = 1.0 - (all_ranks[:, n_bad:] - good_ranks) / n_bad
    aucs = v_bad.mean(axis=1)
    contrast = np.array([1.0, -1.0])
    variance = (
        contrast @ np.cov(v_bad) @ contrast / n_bad + contrast @ np.cov(v_good) @ contrast / n_good
    )
    return AucDifference(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        std_error=float(np.sqrt(max(float(variance), 0.0))),
        bad=n_bad,
        good=n_good,
    )
