"""The back-test report: markdown for people, JSON for machines, a PNG of calibration and
score distributions by outcome. All three are written under temporary names and renamed
together, so a failed run leaves the previous report whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_report(report: dict[str, Any], report_dir: Path) -> list[Path]:
    """Write backtest.md, backtest.json and backtest.png into `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = [report_dir / f"backtest.{ext}" for ext in ("md", "json", "png")]
    temps = [p.with_name(f".{p.name}.tmp") for p in paths]
    try:
        temps[0].write_text(markdown(report))
        temps[1].write_text(json.dumps(report, indent=2) + "\n")
        plot(report, temps[2])
        for tmp, path in zip(temps, paths, strict=True):
            tmp.replace(path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return paths


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables: summary, calibration per version, swaps, unmatched ids."""
    o, w = report["outcomes"], report["performance_window"]
    lines = [
        "# Back-test of served decisions",
        "",
        f"{report['decisions']} stored decisions; {o['rows']} outcomes, {o['matched']} matched, "
        f"{o['unmatched']} matching no stored decision; {o['for_champion_declined']} outcomes "
        f"for applicants the champion declined; {report['challenger_records_lost']} challenger "
        "records lost to errors." + _recut_note(report),
        "",
        f"Performance window: {w.get('min_months', '?')} months. {w['younger_decisions']} "
        f"decisions made on or after {w['matured_before']} are too young to count: left out of "
        f"every outcome figure ({w['younger_outcomes_left_out']} of them already have an "
        "outcome), never scored as good.",
        "",
        f"> {report['population_note']}",
        "",
        "| role | model version | decisions | approval rate | model-expected cost "
        "| matured | bad rate among approved | ROC AUC | Gini | KS | realised cost (matured) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in report["versions"]:
        d = v["discrimination"]
        lines.append(
            f"| {v['role']} | `{v['model_version']}` | {v['decisions']} "
            f"| {_f(v['approval_rate'])} | {_f(v['expected_cost_per_decision'])} "
            f"| {v['matured']} | {_f(v['bad_rate_among_approved'])} | {_f(d['roc_auc'])} "
            f"| {_f(d['gini'])} | {_f(d['ks'])} | {_f(v['realised_cost_per_matured'])} |"
        )
    for v in report["versions"]:
        lines += [
            "",
            f"## Calibration by risk band: {v['role']} `{v['model_version']}` (matured)",
            "",
            "| band | n | bad | mean predicted P(default) | realised bad rate "
            "| binomial p-value | |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {c['band']} | {c['n']} | {c['bad']} | {_f(c['mean_predicted_pd'])} "
            f"| {_f(c['realised_bad_rate'])} | {_f(c['binomial_p_value'], 4)} "
            f"| {'miscalibrated' if c['miscalibrated'] else ''} |"
            for c in v["calibration"]
        ]
    lines += _swap_lines(report)
    if o["unmatched_ids"]:
        lines += ["", "## Outcomes matching no stored decision", ""]
        lines += [f"- line {u['line']}: `{u['decision_id']}`" for u in o["unmatched_ids"]]
    return "\n".join(lines) + "\n"


def _recut_note(report: dict[str, Any]) -> str:
    recut = int(report.get("bands_recut_from_score", 0))
    if not recut:
        return ""
    return (
        f" {recut} logged records carried a risk band that contradicts their score (written "
        "before the band was cut from the shown score): they are grouped by their score's band."
    )


def _swap_lines(report: dict[str, Any]) -> list[str]:
    challengers = [v for v in report["versions"] if v["role"] == "challenger"]
    if not challengers:
        return []
    lines = [
        "",
        "## Challenger against champion on the same applicants",
        "",
        "| challenger | swap-in (only it approves) | swap-in outcomes | swap-out (only the "
        "champion approves) | swap-out matured | swap-out bad |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for v in challengers:
        s = v["swaps"]
        known = "none: never booked" if not s["swap_in_with_outcome"] else s["swap_in_with_outcome"]
        lines.append(
            f"| `{v['model_version']}` | {s['swap_in']} | {known} | {s['swap_out']} "
            f"| {s['swap_out_matured']} | {s['swap_out_bad']} |"
        )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Calibration (predicted against realised per band) and score distributions by outcome."""
    import matplotlib as mpl  # noqa: PLC0415 (slow import, only for the picture)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    versions = report["versions"]
    fig, axes = plt.subplots(1, 1 + len(versions), figsize=(5 * (1 + len(versions)), 4.2))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for v in versions:
        cal = v["calibration"]
        ax.plot(
            [c["mean_predicted_pd"] for c in cal],
            [c["realised_bad_rate"] for c in cal],
            marker="o",
            label=f"{v['role']} {v['model_version'].split(':')[-1][:8]}",
        )
    ax.set(xlabel="mean predicted P(default), per band", ylabel="realised bad rate")
    ax.set_title("calibration by risk band (matured)", fontsize=10)
    ax.legend(fontsize=7)
    for ax, v in zip(axes[1:], versions, strict=True):
        dist = v["score_distribution"]
        edges = np.asarray(dist["edges"])
        for outcome, colour in (("good", "tab:green"), ("bad", "tab:red")):
            ax.stairs(dist[outcome], edges, label=outcome, color=colour, fill=True, alpha=0.4)
        ax.set(xlabel="score", ylabel="matured decisions")
        ax.set_title(
            f"{v['role']} {v['model_version'].split(':')[-1][:8]}: score by outcome", fontsize=10
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
