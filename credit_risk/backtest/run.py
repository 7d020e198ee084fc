"""One back-test: join outcomes with the decision log, compute per version, write the report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np

from credit_risk.backtest.figures import Scored, version_figures
from credit_risk.backtest.inputs import Outcome, read_decisions, read_outcomes
from credit_risk.backtest.report import write_report
from credit_risk.policy import RISK_BANDS, band_indices

DEFAULT_REPORT_DIR: Final = Path(__file__).resolve().parents[2] / "reports" / "backtest"
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


def default_decision_log() -> Path:
    """Where the service writes its decision log by default (the monitoring log path)."""
    from credit_risk.serving.decision_log import default_log_path  # noqa: PLC0415

    return default_log_path()


def backtest(
    outcomes_path: Path, decision_log: Path | None = None, report_dir: Path = DEFAULT_REPORT_DIR
) -> BacktestResult:
    """Validate both inputs whole, compute, then write markdown, JSON and PNG together."""
    log_path = decision_log or default_decision_log()
    decisions = read_decisions(log_path)
    outcomes = read_outcomes(outcomes_path)
    report = assemble(decisions, outcomes)
    report["inputs"] = {"decision_log": str(log_path), "outcomes": str(outcomes_path)}
    return BacktestResult(report, write_report(report, report_dir))


def assemble(decisions: dict[str, dict[str, Any]], outcomes: list[Outcome]) -> dict[str, Any]:
    """The report's data: per (role, version) figures and the accounting of the inputs."""
    bad = {o.decision_id: o.bad for o in outcomes if o.decision_id in decisions}
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
