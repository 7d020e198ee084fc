"""Turn the benchmark's raw results into `benchmark.md` (tables, targets) and `benchmark.png`.

python -m load_tests.report reports/benchmark.json   # re-render without re-measuring
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

OURS: Final = "ours-batching"
NO_BATCHING: Final = "ours-no-batching"
BASELINE: Final = "flask-gunicorn"
CEILING: Final = "bentoml-noop"
HEADLINE_CONNECTIONS: Final = 64
"""The headline load of the targets: 64 concurrent connections."""
LEGEND_BAND: Final = 0.07
"""Fraction of the figure's height kept free below the panels for the shared legend."""
OTHER_LOAD_WARNING_CORES: Final = 0.25
"""Background CPU beyond which the report warns: a tenth of a 2-core machine plus noise."""


@dataclass(frozen=True)
class Target:
    """One performance target, checked against a figure derived from the measurements."""

    text: str
    figure: Callable[[Summary], float | None]
    unit: str
    ok: Callable[[float], bool]


Key = tuple[str, str, int]  # server, load, connections


class Summary:
    """Points grouped by (server, load, connections) across rounds."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
        for p in results["points"]:
            self.groups[(p["server"], p["load"], p["concurrency"])].append(p)
        self.labels = {s["key"]: s["label"] for s in results["servers"]}

    def median(self, key: Key, metric: str) -> float | None:
        """Median of one metric over the rounds, None if the point was never measured."""
        values = [p[metric] for p in self.groups.get(key, []) if p[metric] is not None]
        return statistics.median(values) if values else None

    def errors(self, key: Key) -> tuple[int, int]:
        """(failed, total) requests over the rounds: non-2xx/3xx plus socket errors."""
        points = self.groups.get(key, [])
        return sum(sum(p["errors"].values()) for p in points), sum(p["requests"] for p in points)

    def starts(self, server: str) -> list[dict[str, Any]]:
        """Every start of one server, in round order."""
        return [s for s in self.results["starts"] if s["server"] == server]


def _headline_rps(s: Summary, server: str) -> float | None:
    """Requests/s of one configuration's `/classify` at the headline load."""
    return s.median((server, "classify", HEADLINE_CONNECTIONS), "requests_per_s")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _max_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


TARGETS: Final[list[Target]] = [
    Target(
        "`/classify` at 64 connections: >= 800 requests/s",
        lambda s: _headline_rps(s, OURS),
        "req/s",
        lambda v: v >= 800,
    ),
    Target(
        "`/classify` at 64 connections: >= 4x Flask + gunicorn",
        lambda s: _ratio(_headline_rps(s, OURS), _headline_rps(s, BASELINE)),
        "x",
        lambda v: v >= 4,
    ),
    Target(
        "`/classify` at 64 connections: zero errors",
        lambda s: (
            float(s.errors((OURS, "classify", HEADLINE_CONNECTIONS))[0])
            if (OURS, "classify", HEADLINE_CONNECTIONS) in s.groups
            else None
        ),
        "errors",
        lambda v: v == 0,
    ),
    Target(
        "`/classify` at 64 connections: p99 <= 250 ms",
        lambda s: s.median((OURS, "classify", HEADLINE_CONNECTIONS), "p99_ms"),
        "ms",
        lambda v: v <= 250,
    ),
    Target(
        "one client alone: p50 <= 5 ms",
        lambda s: s.median((OURS, "classify", 1), "p50_ms"),
        "ms",
        lambda v: v <= 5,
    ),
    Target(
        "one client alone: p99 <= 20 ms",
        lambda s: s.median((OURS, "classify", 1), "p99_ms"),
        "ms",
        lambda v: v <= 20,
    ),
    Target(
        "`/classify_batch`, 1,000 applicants per request: >= 50,000 applicants/s",
        lambda s: _max_or_none(
            [
                s.median(k, "applicants_per_s")
                for k in s.groups
                if k[0] == OURS and k[1] == "classify_batch"
            ]
        ),
        "applicants/s",
        lambda v: v >= 50_000,
    ),
    Target(
        "adaptive batching on vs off at 64 connections: >= 3x",
        lambda s: _ratio(_headline_rps(s, OURS), _headline_rps(s, NO_BATCHING)),
        "x",
        lambda v: v >= 3,
    ),
    Target(
        "PSS of all server processes under load: <= 800 MB",
        lambda s: _max_or_none(
            [p["pss_peak_mb"] for p in s.results["points"] if p["server"] == OURS]
        ),
        "MB",
        lambda v: v <= 800,
    ),
    Target(
        "ready <= 5 s after start",
        lambda s: _max_or_none([st["ready_s"] for st in s.starts(OURS)]),
        "s",
        lambda v: v <= 5,
    ),
]


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _spread(values: list[float], digits: int = 0) -> str:
    """Median, with the range over rounds when there is more than one."""
    if not values:
        return "-"
    mid = _fmt(statistics.median(values), digits)
    if len(values) == 1:
        return mid
    return f"{mid} ({_fmt(min(values), digits)} to {_fmt(max(values), digits)})"


def _error_kinds(points: list[dict[str, Any]]) -> str:
    kinds: dict[str, int] = defaultdict(int)
    for p in points:
        for kind, n in p["errors"].items():
            kinds[kind] += n
    named = ", ".join(f"{k} {n:,}" for k, n in sorted(kinds.items()) if n)
    return f" ({named})" if named else ""


def _latency_digits(value: float) -> int:
    return 1 if value < 100 else 0


def markdown(results: dict[str, Any]) -> str:
    """The report: how it was measured, the table, start-up, same-model check, targets."""
    s = Summary(results)
    lines = [*method(results), "", *measurements(s), *other_load_warning(results)]
    lines += ["", *startup(s), "", "## Same model everywhere", "", same_model(results)]
    lines += ["", *against_targets(s), "", ceiling(s), ""]
    return "\n".join(lines)


def method(results: dict[str, Any]) -> list[str]:
    """What ran, where, and how each figure is measured."""
    m = results["machine"]
    st = results["settings"]
    return [
        "# Benchmark",
        "",
        f"Command: `{results['command']}` — {m['date']}, commit `{m['commit']}`, "
        f"model `{results['model']}`.",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, {m['memory_gb']} GB RAM, "
        f"{m['kernel']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        "",
        f"Load: {m['wrk']} ({st['generator']}) on the same machine, loopback only, each point "
        f"{st['warmup_s']:g} s warm-up then {st['duration_s']:g} s measured; "
        f"{st['rounds']} interleaved rounds (the order of the configurations reverses each "
        f"round), fresh server processes per round. Bodies rotate through applicants resampled "
        f"from the training data; `/classify_batch` sends {st['batch_size']:,} per request. "
        f"Figures are the median over rounds, (min to max) when rounds differ. Errors are HTTP "
        f"4xx/5xx answers ('status'), socket errors, and timeouts (no answer within "
        f"{st.get('wrk_timeout_s', '?')} s, counted by wrk at each of its 2 s checks). "
        f"Server CPU is the CPU time of the server's "
        f"whole process tree over the measured window, in cores; the load generator's own CPU "
        f"is shown beside it (both share the machine's {m['usable_cpus']} CPUs), and 'other' is "
        f"whatever else kept the machine busy meanwhile (near 0 for a clean run). PSS is the peak "
        f"proportional set size of all server processes together, sampled every 0.5 s.",
    ]


def measurements(s: Summary) -> list[str]:
    """The main table: one row per configuration, endpoint and concurrency."""
    lines = [
        "| configuration | endpoint | connections | requests/s | applicants/s | p50 ms "
        "| p99 ms | errors | server CPU (cores) | server CPU ms/request | wrk CPU (cores) "
        "| other CPU (cores) | PSS MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = [srv["key"] for srv in s.results["servers"]]
    for key in sorted(s.groups, key=lambda k: (order.index(k[0]), k[1], k[2])):
        lines.append(measurement_row(s, key))
    return lines


def _other_cores(point: dict[str, Any]) -> float:
    """CPU the machine spent on neither the server nor the load generator during a point."""
    busy, server, generator = (
        float(point[k]) for k in ("machine_busy_cores", "server_cpu_cores", "generator_cpu_cores")
    )
    return busy - server - generator


def measurement_row(s: Summary, key: Key) -> str:
    """One row of the main table: medians over the rounds, with their spread."""
    pts = s.groups[key]
    server, load, conns = key
    rps = [p["requests_per_s"] for p in pts]
    aps = [p["applicants_per_s"] for p in pts]
    p50 = [p["p50_ms"] for p in pts if p["p50_ms"] is not None]
    p99 = [p["p99_ms"] for p in pts if p["p99_ms"] is not None]
    other = [max(0.0, _other_cores(p)) for p in pts]
    failed, total = s.errors(key)
    return (
        f"| {s.labels[server]} | `/{load}` | {conns} | {_spread(rps)} "
        f"| {_spread(aps) if load == 'classify_batch' else _fmt(statistics.median(aps))} "
        f"| {_spread(p50, _latency_digits(max(p50, default=0)))} "
        f"| {_spread(p99, _latency_digits(max(p99, default=0)))} "
        f"| {failed:,} / {total:,}{_error_kinds(pts)} "
        f"| {_fmt(s.median(key, 'server_cpu_cores'), 2)} "
        f"| {_fmt(s.median(key, 'server_cpu_ms_per_request'), 2)} "
        f"| {_fmt(s.median(key, 'generator_cpu_cores'), 2)} "
        f"| {_fmt(statistics.median(other), 2)} "
        f"| {_fmt(s.median(key, 'pss_peak_mb'))} |"
    )


def other_load_warning(results: dict[str, Any]) -> list[str]:
    """A warning when other processes took enough CPU to depress the figures; else nothing."""
    busiest = max((_other_cores(p) for p in results["points"]), default=0.0)
    if busiest <= OTHER_LOAD_WARNING_CORES:
        return []
    return [
        "",
        f"**Warning:** other processes kept up to {busiest:.2f} CPUs busy during this run "
        "(column 'other CPU'); the figures of those points are depressed by it.",
    ]


def startup(s: Summary) -> list[str]:
    """Time to ready, processes and memory at rest of every start, and why any failed."""
    lines = [
        "## Start-up and memory at rest",
        "",
        "| configuration | ready after start, s (per round) | processes | PSS idle MB "
        "| machine busy before start (cores) | failure |",
        "|---|---|--:|--:|--:|---|",
    ]
    for srv in s.results["servers"]:
        starts = s.starts(srv["key"])
        ready = ", ".join(_fmt(x["ready_s"], 1) for x in starts)
        procs = _fmt(_max_or_none([x["processes"] or None for x in starts]))
        idle = _spread([x["pss_idle_mb"] for x in starts if x["pss_idle_mb"] is not None])
        failures = "; ".join(x["failure"] for x in starts if x["failure"]) or "none"
        busy = ", ".join(_fmt(x.get("busy_before_cores"), 2) for x in starts)
        lines.append(f"| {srv['label']} | {ready} | {procs} | {idle} | {busy} | {failures} |")
    return lines


def against_targets(s: Summary) -> list[str]:
    """Each target with the figure measured for it and whether it is met."""
    lines = ["## Against the targets", "", "| target | measured | met |", "|---|--:|---|"]
    for t in TARGETS:
        value = t.figure(s)
        met = "-" if value is None else ("yes" if t.ok(value) else "**no**")
        digits = 2 if t.unit == "x" else (1 if t.unit in {"ms", "s"} else 0)
        lines.append(f"| {t.text} | {_fmt(value, digits)} {t.unit} | {met} |")
    return lines


def ceiling(s: Summary) -> str:
    """Ours against BentoML's no-op ceiling at the headline load: how much is left to gain."""
    ours = _headline_rps(s, OURS)
    noop = _headline_rps(s, CEILING)
    share = _ratio(ours, noop)
    if share is None or ours is None or noop is None:
        return (
            f"Ceiling: needs `{OURS}` and `{CEILING}` at {HEADLINE_CONNECTIONS} connections in "
            "the same run; not both measured here."
        )
    text = (
        f"Ceiling: at {HEADLINE_CONNECTIONS} connections `/classify` reaches {share:.0%} of the "
        f"no-op BentoML service measured in this run ({_fmt(ours)} against {_fmt(noop)} "
        f"requests/s; same topology, constant answer, one runner call per request)."
    )
    if share > 1:
        text += (
            " Ours is above it because it coalesces concurrent requests into one runner call:"
            " the no-op bounds BentoML's one-call-per-request path, not ours."
        )
    return text


def same_model(results: dict[str, Any]) -> str:
    """Largest disagreement in probability between configurations scoring the same applicants."""
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for start in results["starts"]:
        if start["probabilities"]:
            by_round[start["round"]].append(start)
    worst = 0.0
    pairs = 0
    for starts in by_round.values():
        ref = starts[0]["probabilities"]
        for other in starts[1:]:
            worst = max(
                worst, *(abs(a - b) for a, b in zip(ref, other["probabilities"], strict=True))
            )
            pairs += 1
    versions = sorted({s["model_version"] for s in results["starts"] if s["model_version"]})
    noop = (
        " The no-op ceiling scores no model: its constant answers were checked against the "
        "schema only."
        if any(srv["key"] == CEILING for srv in results["servers"])
        else ""
    )
    if not pairs:
        return "Only one configuration answered; nothing to compare." + noop
    n = len(next(iter(by_round.values()))[0]["probabilities"])
    return (
        f"Before each measurement every configuration scored the same {n} applicants; all "
        f"answers validated and came from {', '.join(f'`{v}`' for v in versions)}. Largest "
        f"difference in probability of default between configurations: {worst:.2g}." + noop
    )


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency against connections, one line per configuration."""
    s = Summary(results)
    fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[tuple[str, str], list[int]] = defaultdict(list)
    for server, load, conns in s.groups:
        series[(server, load)].append(conns)
    order = [srv["key"] for srv in results["servers"]]
    for server, load in sorted(series, key=lambda k: (order.index(k[0]), k[1])):
        conns = sorted(series[(server, load)])
        label = s.labels[server] + (" — /classify_batch x 1000" if load == "classify_batch" else "")
        for ax, metric in ((ax_tp, "applicants_per_s"), (ax_p99, "p99_ms")):
            medians = [s.median((server, load, c), metric) for c in conns]
            style = "--" if server == CEILING else "-"  # a reference, not a contender
            (line,) = ax.plot(conns, medians, marker="o", linestyle=style, label=label)
            for c in conns:
                values = [p[metric] for p in s.groups[(server, load, c)] if p[metric] is not None]
                ax.scatter([c] * len(values), values, s=10, color=line.get_color(), alpha=0.5)
    ticks = sorted({c for _, _, c in s.groups})
    plain = mpl.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
    for ax in (ax_tp, ax_p99):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlabel("concurrent connections")
        ax.grid(True, which="both", alpha=0.3)
    ax_tp.set_ylabel("applicants scored per second")
    ax_tp.set_title("Throughput (median line, dots = rounds)")
    ax_p99.set_ylabel("p99 latency, ms")
    ax_p99.set_title("p99 latency")
    handles, labels = ax_tp.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    m = results["machine"]
    fig.suptitle(
        f"credit-risk-bento — {m['usable_cpus']} CPUs, wrk on the same machine, {m['date']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, LEGEND_BAND, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    """benchmark.md and benchmark.png under `out`."""
    (out / "benchmark.md").write_text(markdown(results), encoding="utf-8")
    plot(results, out / "benchmark.png")


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/benchmark.json")
    write_report(json.loads(source.read_text()), source.parent)
