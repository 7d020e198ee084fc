"""The back-test's figures for one model version, each on the population where it is defined.

Outcomes exist only for loans that were booked, that is for applicants the champion approved.
So: approval rate and the model's own expected cost are over every decision; calibration,
ROC AUC, Gini and KS over the matured decisions (those with an outcome); the bad rate over the
matured approved. The challenger is measured on the same applicants, and the ones it would have
approved but the champion declined (its swap-in set) have no outcome: they are counted, never
given one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.stats import binomtest, ks_2samp, rankdata

from credit_risk.policy import BAND_FLOORS, COSTS

SIGNIFICANCE: Final = 0.05
"""A band whose binomial test p-value is below this is flagged as miscalibrated."""
SCORE_RANGE: Final = (400, 680)
SCORE_BIN: Final = 10
"""Score-distribution bins: 10 points (half the policy's 20 points to double the odds)."""


@dataclass(frozen=True)
class Scored:
    """One model's decision on one applicant, with the outcome if the loan matured."""

    probability: float
    score: int
    band: str
    """The band the policy gives `score` (what calibration groups by)."""
    logged_band: str
    """The band the decision log recorded (differs from `band` only in logs written before
    the band was cut from the shown score)."""
    approved: bool
    bad: bool | None
    champion_approved: bool


def version_figures(rows: Sequence[Scored]) -> dict[str, Any]:
    """Every figure of one model version (see the module docstring for the populations)."""
    p = np.array([r.probability for r in rows])
    approved = np.array([r.approved for r in rows])
    matured = [r for r in rows if r.bad is not None]
    matured_approved = [r for r in matured if r.approved]
    bads_approved = sum(bool(r.bad) for r in matured_approved)
    return {
        "decisions": len(rows),
        "approved": int(approved.sum()),
        "approval_rate": float(approved.mean()) if len(rows) else None,
        "expected_cost_per_decision": _expected_cost(p, approved),
        "matured": len(matured),
        "matured_bad": sum(bool(r.bad) for r in matured),
        "matured_approved": len(matured_approved),
        "bad_rate_among_approved": (
            bads_approved / len(matured_approved) if matured_approved else None
        ),
        "realised_cost_per_matured": _realised_cost(matured),
        "discrimination": discrimination(matured),
        "calibration": calibration(matured),
        "swaps": swaps(rows),
        "score_distribution": score_distribution(matured),
    }


def score_distribution(matured: Sequence[Scored]) -> dict[str, list[float]]:
    """Matured decisions' scores by outcome, in 10-point bins (the ends catch the tails)."""
    edges = np.arange(SCORE_RANGE[0], SCORE_RANGE[1] + 1, SCORE_BIN)
    clipped = {
        outcome: np.clip([r.score for r in matured if bool(r.bad) == is_bad], *SCORE_RANGE)
        for outcome, is_bad in (("good", False), ("bad", True))
    }
    return {"edges": edges.tolist()} | {
        k: np.histogram(v, bins=edges)[0].tolist() for k, v in clipped.items()
    }


def _expected_cost(p: np.ndarray, approved: np.ndarray) -> float | None:
    """The model's own expectation under the policy's costs: approving costs 5 x P(bad),
    declining 1 x P(good); defined for every decision, outcome or not."""
    if not len(p):
        return None
    cost = np.where(approved, COSTS.bad_approved * p, COSTS.good_declined * (1 - p))
    return float(cost.mean())


def _realised_cost(matured: Sequence[Scored]) -> float | None:
    """Cost of these decisions on the matured loans: bad approved 5, good declined 1."""
    if not matured:
        return None
    total = sum(
        COSTS.bad_approved if r.approved and r.bad else COSTS.good_declined
        for r in matured
        if r.approved == bool(r.bad)
    )
    return float(total / len(matured))


def discrimination(matured: Sequence[Scored]) -> dict[str, Any]:
    """ROC AUC, Gini and KS of P(default) against the outcome (None without both outcomes)."""
    p = np.array([r.probability for r in matured])
    y = np.array([bool(r.bad) for r in matured])
    n_bad, n_good = int(y.sum()), int((~y).sum())
    figures: dict[str, Any] = {"n": len(matured), "bad": n_bad, "good": n_good}
    if not n_bad or not n_good:
        return figures | {"roc_auc": None, "gini": None, "ks": None}
    ranks = rankdata(p)  # ties share their mean rank: the Mann-Whitney form of the AUC
    auc = (ranks[y].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good)
    ks = ks_2samp(p[y], p[~y]).statistic
    return figures | {"roc_auc": float(auc), "gini": float(2 * auc - 1), "ks": float(ks)}


def calibration(matured: Sequence[Scored]) -> list[dict[str, Any]]:
    """Per risk band: mean predicted P(default) against the realised bad rate, with a
    two-sided exact binomial test of the bad count under the mean prediction."""
    table = []
    for band in BAND_FLOORS:
        rows = [r for r in matured if r.band == band]
        if not rows:
            continue
        bads = sum(bool(r.bad) for r in rows)
        predicted = float(np.mean([r.probability for r in rows]))
        p_value = binomtest(bads, len(rows), min(max(predicted, 1e-12), 1 - 1e-12)).pvalue
        table.append(
            {
                "band": band,
                "n": len(rows),
                "bad": bads,
                "mean_predicted_pd": predicted,
                "realised_bad_rate": bads / len(rows),
                "binomial_p_value": float(p_value),
                "miscalibrated": bool(p_value < SIGNIFICANCE),
            }
        )
    return table


def swaps(rows: Sequence[Scored]) -> dict[str, Any]:
    """Against the champion on the same applicants: swap-in (only this model approves: never
    booked, so no outcome) and swap-out (only the champion approves: outcomes known)."""
    swap_in = [r for r in rows if r.approved and not r.champion_approved]
    swap_out = [r for r in rows if r.champion_approved and not r.approved]
    out_matured = [r for r in swap_out if r.bad is not None]
    return {
        "swap_in": len(swap_in),
        "swap_in_with_outcome": sum(r.bad is not None for r in swap_in),
        "swap_out": len(swap_out),
        "swap_out_matured": len(out_matured),
        "swap_out_bad": sum(bool(r.bad) for r in out_matured),
    }
