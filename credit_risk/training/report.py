"""The training report: a table for the terminal, JSON for machines, a PNG for people."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl
import numpy as np
import numpy.typing as npt

from credit_risk.policy import COSTS, ScoreScaling

mpl.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
from sklearn.metrics import roc_auc_score, roc_curve

JSON_NAME: Final = "training.json"
PNG_NAME: Final = "training.png"
_BAYES_ROW: Final = f"expected cost at P(bad) > {COSTS.bayes_label}"
SCORE_BINS: Final = 30
"""Histogram bins for ~200 held-out scores: about seven rows per bin on average."""


@dataclass(frozen=True)
class Curves:
    """Outcomes (1 = bad) and predicted P(bad) behind the report's plots."""

    y_test: npt.NDArray[np.int_]
    p_test: npt.NDArray[np.float64]
    y_oof: npt.NDArray[np.int_]
    p_oof: npt.NDArray[np.float64]


def write_report(report: dict[str, Any], curves: Curves, report_dir: Path) -> list[Path]:
    """Write `training.json` and `training.png` into `report_dir` (created if missing)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / JSON_NAME
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    png_path = report_dir / PNG_NAME
    plot(report, curves, png_path)
    return [json_path, png_path]


def plot(report: dict[str, Any], curves: Curves, path: Path) -> None:
    """ROC curves (held-out and out-of-fold) and the held-out score by outcome."""
    meta = report
    scaling = ScoreScaling.from_metadata(meta["score_scaling"])
    threshold = float(meta["threshold"])
    fig, (roc_ax, dist_ax) = plt.subplots(1, 2, figsize=(12, 5))

    for y, p, label in (
        (curves.y_test, curves.p_test, "held-out"),
        (curves.y_oof, curves.p_oof, "out-of-fold (training split)"),
    ):
        fpr, tpr, _ = roc_curve(y, p)
        auc = float(roc_auc_score(y, p))
        roc_ax.plot(fpr, tpr, label=f"{label}: AUC {auc:.3f}")
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    roc_ax.set(
        xlabel="good applicants declined (false positive rate)",
        ylabel="bad applicants declined (true positive rate)",
        title=f"ROC: {meta['estimator']}",
    )
    roc_ax.legend(loc="lower right")

    scores = scaling.score(curves.p_test)
    bins = np.linspace(scores.min(), scores.max(), SCORE_BINS + 1)
    outcome = curves.y_test.astype(bool)
    dist_ax.hist(scores[~outcome], bins=bins, alpha=0.6, label=f"good ({(~outcome).sum()})")
    dist_ax.hist(scores[outcome], bins=bins, alpha=0.6, label=f"bad ({outcome.sum()})")
    cut = float(scaling.score(np.array([threshold]))[0])
    dist_ax.axvline(cut, color="black", linestyle="--", label=f"decline below {cut:.0f} points")
    dist_ax.set(
        xlabel="score points (higher = lower risk)",
        ylabel="held-out applicants",
        title="Held-out score by outcome",
    )
    dist_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_table(report: dict[str, Any]) -> str:
    """The report as aligned text: what was chosen and how it measures against the target."""
    lines = [
        *_header(report),
        *_figures(report),
        *_verdicts(report),
        *_stability(report["cv"]),
        *_baselines(report["cv"]),
        *_search(report),
        *_gates(report),
        *_champion(report.get("champion_comparison"), report.get("gate_settings")),
        "",
    ]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the gates as a table, then the whole text table."""
    lines = [f"# Training report: {report.get('tag', '(not saved)')}", ""]
    if report.get("gates"):
        lines += [
            _gates_heading(report),
            "",
            "| gate | status | figure | bound | what it says |",
            "| --- | --- | ---: | ---: | --- |",
        ]
        lines += [
            f"| {g['name']} | {g['status']} | {g['figure']:.4f} | {g['bound']:g} | "
            f"{g['description']} |"
            for g in report["gates"]
        ]
        lines.append("")
    return "\n".join([*lines, "```text", render_table(report).strip("\n"), "```", ""])


def _gates_heading(report: dict[str, Any]) -> str:
    if report.get("quality_gates_skipped"):
        return "quality gates (SKIPPED with --skip-gates: a failure did not stop the save):"
    return "quality gates (a failed one stops the run before anything is saved):"


def _gates(report: dict[str, Any]) -> list[str]:
    gates = report.get("gates") or []
    if not gates:
        return []
    lines = ["", f"  {_gates_heading(report)}"]
    lines += [f"    {g['name']:<12} {g['status']:<8} {g['description']}" for g in gates]
    return lines


def _champion(comparison: dict[str, Any] | None, settings: dict[str, Any] | None) -> list[str]:
    """Both AUCs on the same rows, the difference, its interval and the rule."""
    if not comparison or "difference" not in comparison or not settings:
        return []
    low, high = comparison["interval"]
    return [
        "",
        f"  champion comparison ({comparison['method']}) on {comparison['rows']} held-out rows "
        f"({comparison['bad']} bad): {comparison['rows_note']}",
        f"    {'this model':<44} ROC AUC {comparison['candidate_roc_auc']:.4f}",
        f"    {comparison['champion'] + ' (champion)':<44} ROC AUC "
        f"{comparison['champion_roc_auc']:.4f}",
        f"    difference {comparison['difference']:+.4f} (standard error "
        f"{comparison['std_error']:.4f}), {100 * comparison['interval_level']:g} % CI "
        f"[{low:+.4f}, {high:+.4f}]",
        f"    verdict: {comparison.get('verdict', '-')} (the gate fails when the interval's upper "
        f"end is below {-settings['champion_tolerance']:+g})",
    ]


def _header(report: dict[str, Any]) -> list[str]:
    return [
        "",
        f"credit_risk model {report.get('tag', '(not saved)')}",
        f"  estimator     {report['estimator']}  {_params(report['estimator_params']['searched'])}",
        f"  threshold     decline when P(bad) > {report['threshold']:.4f} "
        "(least expected cost on out-of-fold training predictions)",
        f"  data          sha256 {report['data_sha256'][:16]}…  seed {report['seed']}"
        f"  train {report['data_rows']['train']} / held-out {report['data_rows']['held_out']}",
        "",
    ]


def _figures(report: dict[str, Any]) -> list[str]:
    held, cv, proto = report["metrics"]["held_out"], report["metrics"]["cv"], report["cv"]
    return [
        f"  {'figure':<34}{'held-out':>10}{'CV (train split)':>20}{'protocol':>20}",
        f"  {'-' * 84}",
        _row("ROC AUC", held["roc_auc"], cv["roc_auc"], proto["roc_auc"]),
        _row("Gini", held["gini"], None, None),
        _row("KS", held["ks"], None, None),
        _row("Brier score", held["brier"], None, None),
        _row("log loss", held["log_loss"], None, None),
        _row(
            "expected cost / applicant",
            held["expected_cost"],
            cv["expected_cost_at_threshold"],
            proto.get("expected_cost_nested_threshold"),
        ),
        _row(
            _BAYES_ROW,
            held["expected_cost_at_bayes_threshold"],
            None,
            proto["expected_cost_at_bayes_threshold"],
        ),
        _row("  declining everyone instead", held["expected_cost_decline_all"], None, None),
        _row("  approving everyone instead", held["expected_cost_approve_all"], None, None),
        _row("approval rate", held["approval_rate"], None, None),
        "",
    ]


def _verdicts(report: dict[str, Any]) -> list[str]:
    conf, proto = report["metrics"]["held_out"]["confusion"], report["cv"]
    target = proto["target"]
    return [
        f"  held-out confusion at the threshold: bad declined {conf['bad_declined']}, "
        f"bad approved {conf['bad_approved']}, good declined {conf['good_declined']}, "
        f"good approved {conf['good_approved']}",
        f"  protocol: {proto['description']}",
        "  target (protocol): "
        + _verdict("ROC AUC", proto["roc_auc"]["mean"], target["roc_auc_at_least"], higher=True)
        + "; "
        + _verdict(
            _BAYES_ROW,
            proto["expected_cost_at_bayes_threshold"]["mean"],
            target["expected_cost_at_most"],
            higher=False,
        ),
    ]


def _stability(proto: dict[str, Any]) -> list[str]:
    sweep = proto.get("seed_sweep")
    if not sweep:
        return []
    auc, cost = sweep["roc_auc"], sweep["expected_cost_at_bayes_threshold"]
    return [
        f"  stability: {sweep['description']}: ROC AUC {auc['mean']:.4f} "
        f"(runs {auc['min']:.4f}-{auc['max']:.4f}), "
        f"cost at {COSTS.bayes_label} {cost['mean']:.4f} "
        f"(runs {cost['min']:.4f}-{cost['max']:.4f})"
    ]


def _baselines(proto: dict[str, Any]) -> list[str]:
    baselines = proto.get("baselines") or []
    if not baselines:
        return []
    width = max(len(_params(b["params"])) for b in baselines)
    return ["", "  baselines under the same protocol:"] + [
        f"    {b['estimator']:<8} {_params(b['params']):<{width}}  ROC AUC "
        f"{_spread(b['roc_auc'])}  "
        f"cost@{COSTS.bayes_label} {_spread(b['expected_cost_at_bayes_threshold'])}"
        for b in baselines
    ]


def _search(report: dict[str, Any], shown: int = 5) -> list[str]:
    search = report.get("model_search", [])
    if not search:
        return []
    width = max(len(_params(s["params"])) for s in search[:shown])
    lines = ["", "  model search (CV ROC AUC on the training split, best first):"]
    lines += [
        f"    {s['estimator']:<8} {_params(s['params']):<{width}}  {_spread(s['roc_auc'])}"
        for s in search[:shown]
    ]
    if len(search) > shown:
        lines.append(f"    … and {len(search) - shown} more in training.json")
    return lines


def _row(
    name: str, held: float, cv: dict[str, float] | None, proto: dict[str, float] | None
) -> str:
    return f"  {name:<34}{held:>10.4f}{_spread(cv):>20}{_spread(proto):>20}"


def _spread(stat: dict[str, float] | None) -> str:
    if stat is None:
        return ""
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in params.items()
    )


def _verdict(name: str, value: float, target: float, *, higher: bool) -> str:
    ok = value >= target if higher else value <= target
    relation = (">=" if higher else "<=") if ok else ("<" if higher else ">")
    outcome = "met" if ok else f"MISSED by {abs(value - target):.4f}"
    return f"{name} {value:.4f} {relation} {target} {outcome}"
