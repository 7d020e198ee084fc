"""Fairness at the chosen threshold: does a model that never sees sex treat it differently?

Sex is not a model input, age is. A model can still treat a protected group differently by
proxy (a characteristic that goes with the group), so the report compares, per group:
approval rate, the adverse impact ratio (a group's approval rate over the best-approved
group's; the four-fifths rule flags a ratio below 0.8) and the bad rate among the approved
(a model that approves one group's bad risks more readily than another's shows it here).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FOUR_FIFTHS: Final = 0.8
"""Adverse impact ratio below which a group counts as adversely affected (four-fifths rule)."""

AGE_BANDS: Final = ((0.0, 25.0, "under 25"), (25.0, 35.0, "25-34"), (35.0, 50.0, "35-49"))
AGE_BAND_TOP: Final = "50 and over"
"""Age bands [low, high) in years; under 25 is the group the fairness literature on this data
set watches."""


def age_band(age: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """The band label of every age."""
    years = np.asarray(age, dtype=np.float64)
    labels = np.full(len(years), AGE_BAND_TOP, dtype=object)
    for low, high, label in AGE_BANDS:
        labels[(years >= low) & (years < high)] = label
    return labels.astype(str)


def attribute_report(
    groups: npt.ArrayLike, approved: npt.ArrayLike, bad: npt.ArrayLike
) -> dict[str, Any]:
    """Per group: applicants, approval rate, bad rate among the approved; then the ratios."""
    group = np.asarray(groups).astype(str)
    ok = np.asarray(approved, dtype=bool)
    outcome = np.asarray(bad, dtype=bool)
    rows = []
    for name in sorted(set(group.tolist())):
        member = group == name
        n_approved = int((member & ok).sum())
        rows.append(
            {
                "group": name,
                "applicants": int(member.sum()),
                "approved": n_approved,
                "approval_rate": float(n_approved / member.sum()),
                "bad_rate_among_approved": (
                    float((member & ok & outcome).sum() / n_approved) if n_approved else math.nan
                ),
            }
        )
    rates = [r["approval_rate"] for r in rows]
    best = rows[int(np.argmax(rates))]
    worst = rows[int(np.argmin(rates))]
    bad_rates = [r["bad_rate_among_approved"] for r in rows if r["approved"]]
    return {
        "groups": rows,
        "reference_group": best["group"],
        "lowest_group": worst["group"],
        "adverse_impact_ratio": float(worst["approval_rate"] / best["approval_rate"])
        if best["approval_rate"]
        else math.nan,
        "bad_rate_difference_among_approved": float(max(bad_rates) - min(bad_rates))
        if bad_rates
        else math.nan,
    }


def fairness_report(
    sex: npt.ArrayLike, age: npt.ArrayLike, approved: npt.ArrayLike, bad: npt.ArrayLike
) -> dict[str, Any]:
    """Approval and bad rates by sex and by age band, with the smallest adverse impact ratio."""
    attributes = {
        "sex": attribute_report(sex, approved, bad),
        "age_band": attribute_report(age_band(age), approved, bad),
    }
    return {
        "applicants": len(np.asarray(approved)),
        "attributes": attributes,
        "adverse_impact_ratio": min(a["adverse_impact_ratio"] for a in attributes.values()),
        "four_fifths": FOUR_FIFTHS,
    }


def fairness_markdown(report: dict[str, Any]) -> str:
    """The report as the markdown table the docs and MLflow show."""
    lines = [
        f"Decisions on {report['applicants']} applicants at the model's threshold.",
        "",
        "| attribute | group | applicants | approval rate | bad rate among approved |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, attribute in report["attributes"].items():
        for row in attribute["groups"]:
            lines.append(
                f"| {name} | {row['group']} | {row['applicants']} | "
                f"{row['approval_rate']:.1%} | {row['bad_rate_among_approved']:.1%} |"
            )
    lines += ["", "| attribute | adverse impact ratio | bad-rate difference among approved |"]
    lines.append("| --- | ---: | ---: |")
    for name, attribute in report["attributes"].items():
        lines.append(
            f"| {name} | {attribute['adverse_impact_ratio']:.3f} "
            f"({attribute['lowest_group']} vs {attribute['reference_group']}) | "
            f"{attribute['bad_rate_difference_among_approved']:.1%} |"
        )
    return "\n".join(lines) + "\n"
