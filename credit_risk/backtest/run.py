"""One back-test: join outcomes with the stored decisions, compute per version, write the report.

The performance window: a decision younger than `min_months` has not had the time to go bad,
so its loan is not yet a good one. Such decisions are counted apart, and any outcome already
known for them is left out (never scored, good or bad), so every version is measured on loans
that had the whole window.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np

from credit_risk.backtest.figures import Scored, version_figures
from credit_risk.backtest.inputs import (
    Outcome,
    check_against_decisions,
    read_decisions,
    read_outcomes,
    stored_outcomes,
)
from credit_risk.backtest.report import write_report
from credit_risk.decision_store import DecisionStore, describe_url
from credit_risk.decision_store.records import utc_text
from credit_risk.policy import RISK_BANDS, band_indices

DEFAULT_REPORT_DIR: Final = Path(__file__).resolve().parents[2] / "reports" / "backtest"
DEFAULT_MIN_MONTHS: Final = 12
"""The performance window: a loan counts as matured once its decision is this old."""
POPULATION_NOTE: Final = (
    "Outcomes exist only for loans that were booked: applicants the champion approved. "
    "Approval rate and the model's expected cost are over every decision; calibration, ROC AUC, "
    "Gini, KS and realised cost over the matured decisions; the bad rate over the matured "
    "approved. A challenger is measured on the same applicants: those it would have approved "
    "but the champion declined (swap-in) were never booked and have no outcome."
)


@dataclass(frozen=True)
class BacktestResult:
    """The report's data and the files written."""

    report: dict[str, Any]
    paths: list[Path]

    @property
    def unmatched(self) -> int:
        """Outcomes whose decision_id is in no decision log read."""
        return int(self.report["outcomes"]["unmatched"])


def backtest(
    store: DecisionStore,
    outcomes_path: Path | None = None,
    report_dir: Path = DEFAULT_REPORT_DIR,
    min_months: int = DEFAULT_MIN_MONTHS,
    now: datetime | None = None,
) -> BacktestResult:
    """Read the decisions and the outcomes (the store's, or a file's validated whole),
    compute, then write markdown, JSON and PNG together."""
    decisions = read_decisions(store)
    if outcomes_path is None:
        outcomes = stored_outcomes(store)
    else:
        outcomes = read_outcomes(outcomes_path)
        check_dates(outcomes_path, outcomes, decisions)
    matured_before = utc_text(months_before(now or datetime.now(UTC), min_months))
    report = assemble(decisions, outcomes, matured_before)
    report["performance_window"] |= {"min_months": min_months}
    report["inputs"] = {
        "decision_store": describe_url(store.url),
        "outcomes": str(outcomes_path) if outcomes_path else "the decision store",
    }
    return BacktestResult(report, write_report(report, report_dir))


def check_dates(path: Path, outcomes: list[Outcome], decisions: dict[str, dict[str, Any]]) -> None:
    """An outcome observed before its decision is refused (unknown ids are reported)."""
    known = {
        o.decision_id: decisions[o.decision_id]["decided_at"]
        for o in outcomes
        if o.decision_id in decisions
    }
    check_against_decisions(path, [o for o in outcomes if o.decision_id in known], known)


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the month's last day where the
    day does not exist, e.g. 31 March - 1 month = 28 or 29 February)."""
    total = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(total, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def assemble(
    decisions: dict[str, dict[str, Any]], outcomes: list[Outcome], matured_before: str = "~"
) -> dict[str, Any]:
    """The report's data: per (role, version) figures and the accounting of the inputs.
    Decisions made at or after `matured_before` are in the performance window: counted apart,
    their outcomes left out."""
    young = {i for i, d in decisions.items() if d["decided_at"] >= matured_before}
    known = {o.decision_id: o.bad for o in outcomes if o.decision_id in decisions}
    bad = {i: b for i, b in known.items() if i not in young}
    unmatched = [o for o in outcomes if o.decision_id not in decisions]
    groups: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    lost = 0
    for decision_id, d in decisions.items():
        approved = d["decision"] == "approve"
        outcome = bad.get(decision_id)
        records = [("champion", d)]
        if "challenger" in d:
            if d["challenger"] is None:
                lost += 1
            else:
                records.append(("challenger", d["challenger"]))
        for role, record in records:
            groups[role, record["model_version"]].append(_scored(record, outcome, approved))
    recut = sum(r.band != r.logged_band for rows in groups.values() for r in rows)
    declined_with_outcome = sum(decisions[i]["decision"] != "approve" for i in bad)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "population_note": POPULATION_NOTE,
        "decisions": len(decisions),
        "outcomes": {
            "rows": len(outcomes),
            "matched": len(bad),
            "unmatched": len(unmatched),
            "unmatched_ids": [{"line": o.line, "decision_id": o.decision_id} for o in unmatched],
            "for_champion_declined": declined_with_outcome,
        },
        "challenger_records_lost": lost,
        "bands_recut_from_score": recut,
        "performance_window": {
            "matured_before": matured_before,
            "younger_decisions": len(young),
            "younger_outcomes_left_out": len(known) - len(bad),
        },
        "versions": [
            {"role": role, "model_version": version, **version_figures(rows)}
            for (role, version), rows in sorted(
                groups.items(), key=lambda g: (g[0][0] != "champion", g[0][1])
            )
        ],
    }


def _scored(record: dict[str, Any], bad: bool | None, champion_approved: bool) -> Scored:
    score = int(record["score"])
    return Scored(
        probability=float(record["probability_of_default"]),
        score=score,
        band=band_of(score),
        logged_band=str(record["risk_band"]),
        approved=record["decision"] == "approve",
        bad=bad,
        champion_approved=champion_approved,
    )


@cache
def band_of(score: int) -> str:
    """The band the policy gives a shown score: records logged before score and band followed
    one rule may carry a band that contradicts their score, so the back-test re-cuts it."""
    return RISK_BANDS[int(band_indices(np.array([score], dtype=np.int64))[0])]
