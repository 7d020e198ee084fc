"""The scorecard table a credit analyst signs off: points per attribute, with the evidence.

For each characteristic (applicant field), each bin or category: its training count and bad
rate, its weight of evidence, and the points it adds; for the characteristic, its information
value. A score is the base points plus one row's points per characteristic, exactly the score
the service gives before rounding (`ScoreScaling.score` of the model's probability):
score = offset - factor * (intercept + sum coef_j * WoE_j) splits into base = offset - factor *
intercept and points = -factor * coef_j * WoE_j per attribute. The service shows that sum
rounded to whole points and cuts the risk band from the shown score
(`credit_risk.policy.score_and_band`); the markdown table ends with that rule.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from typing import Any, Final

import numpy as np
from sklearn.pipeline import Pipeline

from credit_risk.arrays import FloatArray, IntArray
from credit_risk.policy import BAND_FLOORS, ScoreScaling
from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training.preprocessing import WoEEncoder

CSV_NAME: Final = "scorecard.csv"
MARKDOWN_NAME: Final = "scorecard.md"
BASE_ROW: Final = "(base points)"
COLUMNS: Final = (
    "characteristic",
    "bin",
    "lower",
    "upper",
    "count",
    "bad_rate",
    "woe",
    "points",
    "information_value",
)
"""`lower`/`upper` bound a numeric bin as lower <= x < upper (empty: unbounded); a category's
bin is its code."""


def scorecard_rows(
    pipeline: Pipeline,
    X_train: FloatArray,  # noqa: N803
    y_train: IntArray,
    scaling: ScoreScaling,
) -> list[dict[str, Any]]:
    """One row per characteristic and bin, after a base-points row; TypeError if not linear."""
    woe = pipeline.named_steps.get("woe")
    clf = pipeline.named_steps.get("clf")
    if not isinstance(woe, WoEEncoder) or not hasattr(clf, "coef_"):
        msg = "only a WoE + logistic-regression scorecard has a points table"
        raise TypeError(msg)
    coef = np.asarray(clf.coef_, dtype=np.float64).ravel()
    intercept = float(np.asarray(clf.intercept_).ravel()[0])
    bins = woe.bin_index(X_train)
    iv = woe.information_value(X_train, y_train)
    bad = np.asarray(y_train).astype(bool)
    rows: list[dict[str, Any]] = [
        {**dict.fromkeys(COLUMNS, ""), "characteristic": BASE_ROW, "bin": "all applicants"}
        | {"points": scaling.offset - scaling.factor * intercept}
    ]
    for j, name in enumerate(FEATURES):
        labels = _bin_labels(name, woe.edges_[j])
        counts = np.bincount(bins[:, j], minlength=len(labels))
        bads = np.bincount(bins[bad, j], minlength=len(labels))
        for k, (label, lower, upper) in enumerate(labels):
            rows.append(
                {
                    "characteristic": name,
                    "bin": label,
                    "lower": lower,
                    "upper": upper,
                    "count": int(counts[k]),
                    "bad_rate": float(bads[k] / counts[k]) if counts[k] else "",
                    "woe": float(woe.woe_[j][k]),
                    "points": float(-scaling.factor * coef[j] * woe.woe_[j][k]),
                    "information_value": float(iv[j]),
                }
            )
    return rows


def _bin_labels(name: str, edges: FloatArray | None) -> list[tuple[str, Any, Any]]:
    if edges is None:
        return [(c, "", "") for c in CATEGORIES[name]]
    bounds = [None, *(float(e) for e in edges), None]
    out: list[tuple[str, Any, Any]] = []
    for lower, upper in itertools.pairwise(bounds):
        if lower is None:
            label = f"< {upper:g}" if upper is not None else "all"
        elif upper is None:
            label = f">= {lower:g}"
        else:
            label = f"{lower:g} to < {upper:g}"
        out.append((label, "" if lower is None else lower, "" if upper is None else upper))
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Full precision, for systems and for checking the points against served scores."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """Rounded for people: one table, characteristics in schema order."""
    lines = [
        "| characteristic | bin | count | bad rate | WoE | points | IV |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    previous = None
    for row in rows:
        first = row["characteristic"] != previous
        previous = row["characteristic"]
        rate = f"{row['bad_rate']:.1%}" if isinstance(row["bad_rate"], float) else ""
        woe = f"{row['woe']:+.3f}" if isinstance(row["woe"], float) else ""
        iv = f"{row['information_value']:.3f}" if first and row["information_value"] != "" else ""
        lines.append(
            f"| {row['characteristic'] if first else ''} | {row['bin']} | {row['count']} | "
            f"{rate} | {woe} | {row['points']:.1f} | {iv} |"
        )
    return "\n".join([*lines, "", _band_rule()]) + "\n"


def _band_rule() -> str:
    """How a sum of points becomes the score and band a decision shows (from the policy)."""
    floors = ", ".join(
        f"{band} from {floor:g}" for band, floor in BAND_FLOORS.items() if math.isfinite(floor)
    )
    return (
        "Score shown = base points + one row's points per characteristic, rounded to whole "
        f"points; the risk band is cut from the shown score: {floors}, "
        f"{list(BAND_FLOORS)[-1]} below."
    )
