"""The benchmark's raw results as `benchmark.md` (tables, targets) and `benchmark.png`.

python -m load_tests.report reports/benchmark.json   # re-render without re-measuring
"""

from __future__ import annotations

import json
import operator
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from load_tests.bench import BASELINE, BEFORE, FLOOR, NO_BATCHING, OURS, POSTGRES, SHADOW
from load_tests.harness import md_table
from load_tests.harness import write_report as write_json_and_markdown

HEADLINE: Final = 64
"""The headline load of the targets: 64 concurrent connections."""
OTHER_LOAD_WARNING_CORES: Final = 0.25
"""Background CPU beyond which the report warns: a tenth of a 2-core machine plus noise."""

Key = tuple[str, str, int]  # server, load, connections


def largest(values: Sequence[float | None]) -> float | None:
    """The largest of the measured values."""
    return max((v for v in values if v is not None), default=None)


def quotient(x: float | None, y: float | None) -> float | None:
    """x / y where both were measured."""
    return x / y if x is not None and y else None


class Summary:
    """Points grouped by (server, load, connections) across rounds."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results, self.groups = results, defaultdict(list)
        for p in results["points"]:
            self.groups[(p["server"], p["load"], p["concurrency"])].append(p)
        self.labels = {s["key"]: s["label"] for s in results["servers"]}
        self.order = list(self.labels)

    def values(self, key: Key, metric: str) -> list[float]:
        """One metric of one point over the rounds (where it was measured)."""
        return [p[metric] for p in self.groups.get(key, []) if p[metric] is not None]

    def median(self, key: Key, metric: str) -> float | None:
        """Median over the rounds, None if the point was never measured."""
        values = self.values(key, metric)
        return statistics.median(values) if values else None

    def errors(self, key: Key) -> float | None:
        """Failed requests over the rounds: non-2xx/3xx answers, socket errors, timeouts."""
        points = self.groups.get(key)
        return float(sum(sum(p["errors"].values()) for p in points)) if points else None

    def headline(self, server: str, metric: str = "requests_per_s") -> float | None:
        """One configuration's `/classify` at the headline load."""
        return self.median((server, "classify", HEADLINE), metric)

    def ratio(self, a: str, b: str, metric: str = "requests_per_s") -> float | None:
        """Headline `metric` of `a` over `b`."""
        return quotient(self.headline(a, metric), self.headline(b, metric))

    def batch_rate(self, server: str) -> float | None:
        """The best median applicants/s of `server`'s `/classify_batch`."""
        keys = [k for k in self.groups if k[:2] == (server, "classify_batch")]
        return largest([self.median(k, "applicants_per_s") for k in keys])

    def round_spread(self, server: str) -> float | None:
        """The worst round's headline throughput over the best round's (1 = every round alike)."""
        values = self.values((server, "classify", HEADLINE), "requests_per_s")
        return min(values) / max(values) if values else None

    def ours(self, part: str, metric: str) -> float | None:
        """The largest `metric` of ours over its `points` or `starts`."""
        return largest([x[metric] for x in self.results[part] if x["server"] == OURS])


Figure = Callable[[Summary], float | None]
TARGETS: Final[list[tuple[str, str, Callable[[float, float], bool], float, Figure]]] = [
    ("server CPU per `/classify` at 64 connections: <= 4x the floor's", "x", operator.le, 4,
     lambda s: s.ratio(OURS, FLOOR, "server_cpu_ms_per_request")),
    ("`/classify` at 64 connections: >= 3x ours before (`--before`)", "x", operator.ge, 3,
     lambda s: s.ratio(OURS, BEFORE)),
    ("`/classify` at 64 connections: p99 <= 100 ms", "ms", operator.le, 100,
     lambda s: s.headline(OURS, "p99_ms")),
    ("`/classify` at 64 connections: zero errors", "errors", operator.eq, 0,
     lambda s: s.errors((OURS, "classify", HEADLINE))),
    ("`/classify` at 64 connections: every round within 15 % of the best", "x", operator.ge,
     0.85, lambda s: s.round_spread(OURS)),
    ("adaptive batching on vs off at 64 connections: >= 3x", "x", operator.ge, 3,
     lambda s: s.ratio(OURS, NO_BATCHING)),
    ("`/classify_batch` applicants/s: >= 25x `/classify` requests/s at 64", "x", operator.ge, 25,
     lambda s: quotient(s.batch_rate(OURS), s.headline(OURS))),
    ("decisions on SQLite: >= 90 % of ours before at 64 connections", "x", operator.ge, 0.9,
     lambda s: s.ratio(OURS, BEFORE)),
    ("decisions on PostgreSQL: >= 90 % of SQLite's at 64 connections", "x", operator.ge, 0.9,
     lambda s: s.ratio(POSTGRES, OURS)),
    ("`/classify_batch` no slower than before", "x", operator.ge, 1,
     lambda s: quotient(s.batch_rate(OURS), s.batch_rate(BEFORE))),
    ("challenger in shadow: >= 90 % of champion only at 64 connections", "x", operator.ge, 0.9,
     lambda s: s.ratio(SHADOW, OURS)),
    ("`/classify` at 64 connections: >= 4x Flask + gunicorn", "x", operator.ge, 4,
     lambda s: s.ratio(OURS, BASELINE)),
    ("one client alone: p50 <= 5 ms", "ms", operator.le, 5,
     lambda s: s.median((OURS, "classify", 1), "p50_ms")),
    ("PSS of all server processes under load: <= 800 MB", "MB", operator.le, 800,
     lambda s: s.ours("points", "pss_peak_mb")),
    ("ready <= 5 s after start", "s", operator.le, 5, lambda s: s.ours("starts", "ready_s")),
]  # fmt: skip
"""Each performance target: its text, unit, test and bound, and the figure measured for it."""


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators, `-` when it was not measured."""
    return "-" if value is None else f"{value:,.{digits}f}"


def spread(values: Sequence[float], digits: int = 0) -> str:
    """Median, with the range over rounds when they differ."""
    if len(values) < 2:
        return fmt(values[0] if values else None, digits)
    mid, low, high = (fmt(f(values), digits) for f in (statistics.median, min, max))
    return f"{mid} ({low} to {high})"


def other_cores(p: dict[str, Any]) -> float:
    """CPU the machine spent on neither the server nor the load generator during a point."""
    return float(p["machine_busy_cores"] - p["server_cpu_cores"] - p["generator_cpu_cores"])


def markdown(results: dict[str, Any]) -> str:
    """The report: how it was measured, the table, start-up, same-model check, targets."""
    s, m, st = Summary(results), results["machine"], results["settings"]
    busiest = max((other_cores(p) for p in results["points"]), default=0.0)
    lines = [
        "# Benchmark", "",
        f"Command: `{results['command']}` — {m['date']}, commit `{m['commit']}`, model "
        f"`{results['model']}`.", "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, {m['memory_gb']} GB RAM, "
        f"{m['kernel']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
        f"Load: {st['generator']} on the same machine, loopback only, each point "
        f"{st['warmup_s']:g} s warm-up then {st['duration_s']:g} s measured; {st['rounds']} "
        "interleaved rounds (the order of the configurations reverses each round), fresh server "
        "processes per round. Bodies rotate through applicants resampled from the training data; "
        f"`/classify_batch` sends {st['batch_size']:,} per request. Figures are the median over "
        "rounds, (min to max) when rounds differ. Errors are HTTP 4xx/5xx answers ('status'), "
        f"socket errors, and timeouts (no answer within {st['wrk_timeout_s']} s). Server CPU is "
        "the CPU time of the server's whole process tree over the measured window, in cores; the "
        f"load generator's is beside it (both share the machine's {m['usable_cpus']} CPUs), and "
        "'other' is whatever else kept the machine busy (near 0 for a clean run). PSS is the peak "
        "proportional set size of all server processes together, sampled every 0.5 s.", "",
        *md_table(
            ["configuration", "endpoint", "connections", "requests/s", "applicants/s", "p50 ms",
             "p99 ms", "errors", "server CPU (cores)", "server CPU ms/request", "wrk CPU (cores)",
             "other CPU (cores)", "PSS MB"],
            [row(s, k) for k in sorted(s.groups, key=lambda k: (s.order.index(k[0]), k[1], k[2]))],
            "llrrrrrrrrrrr",
        ),
        *([] if busiest <= OTHER_LOAD_WARNING_CORES else [
            "", f"**Warning:** other processes kept up to {busiest:.2f} CPUs busy during this run "
            "(column 'other CPU'); the figures of those points are depressed by it."]),
        "", "## Start-up and memory at rest", "",
        *md_table(
            ["configuration", "ready after start, s (per round)", "processes", "PSS idle MB",
             "machine busy before start (cores)", "failure"],
            [[s.labels[key], ", ".join(fmt(x["ready_s"], 1) for x in starts),
              fmt(largest([x["processes"] or None for x in starts])),
              spread([x["pss_idle_mb"] for x in starts if x["pss_idle_mb"] is not None]),
              ", ".join(fmt(x.get("busy_before_cores"), 2) for x in starts),
              "; ".join(x["failure"] for x in starts if x["failure"]) or "none"]
             for key in s.order
             if (starts := [x for x in results["starts"] if x["server"] == key])],
            "llrrrl",
        ),
        "", "## Same model everywhere", "", same_model(results), "", "## Against the targets", "",
        *md_table(["target", "measured", "met"], [
            [text, f"{fmt(v := figure(s), 2 if unit == 'x' else int(unit in {'ms', 's'}))} {unit}",
             "-" if v is None else ("yes" if test(v, bound) else "**no**")]
            for text, unit, test, bound, figure in TARGETS], "lrl"),
        "", floor(s), "",
    ]  # fmt: skip
    return "\n".join(lines)


def row(s: Summary, key: Key) -> list[str]:
    """One row of the main table: medians over the rounds, with their spread."""
    server, load, conns = key
    pts = s.groups[key]
    errors = sum(sum(p["errors"].values()) for p in pts)
    kinds = ", ".join(f"{k} {sum(p['errors'][k] for p in pts):,}" for k in pts[0]["errors"]
                      if sum(p["errors"][k] for p in pts))  # fmt: skip
    p50, p99 = s.values(key, "p50_ms"), s.values(key, "p99_ms")
    aps = s.values(key, "applicants_per_s")
    return [
        s.labels[server], f"`/{load}`", str(conns), spread(s.values(key, "requests_per_s")),
        spread(aps) if load == "classify_batch" else fmt(statistics.median(aps)),
        spread(p50, int(max(p50, default=0) < 100)), spread(p99, int(max(p99, default=0) < 100)),
        f"{errors:,} / {sum(p['requests'] for p in pts):,}" + (f" ({kinds})" if kinds else ""),
        *(fmt(s.median(key, k), 2) for k in ("server_cpu_cores", "server_cpu_ms_per_request")),
        fmt(s.median(key, "generator_cpu_cores"), 2),
        fmt(statistics.median(max(0.0, other_cores(p)) for p in pts), 2),
        fmt(s.median(key, "pss_peak_mb")),
    ]  # fmt: skip


def floor(s: Summary) -> str:
    """Ours as ratios of the floor at the headline load: what BentoML, the model, the runner,
    the record and every check cost over the bare HTTP round trip."""
    cpu, rate = s.ratio(OURS, FLOOR, "server_cpu_ms_per_request"), s.ratio(OURS, FLOOR)
    if cpu is None or rate is None:
        return f"Floor: needs `{OURS}` and `{FLOOR}` at {HEADLINE} connections in the same run."
    return (
        f"Floor: at {HEADLINE} connections `/classify` costs {cpu:.2f}x the server CPU per request "
        f"of the bare Starlette app that only validates the same applicant "
        f"({fmt(s.headline(OURS, 'server_cpu_ms_per_request'), 3)} against "
        f"{fmt(s.headline(FLOOR, 'server_cpu_ms_per_request'), 3)} ms), and answers {rate:.0%} "
        f"of its requests/s ({fmt(s.headline(OURS))} against {fmt(s.headline(FLOOR))})."
    )


def same_model(results: dict[str, Any]) -> str:
    """Largest disagreement in probability between configurations scoring the same applicants."""
    by_round: dict[int, list[list[float]]] = defaultdict(list)
    for start in results["starts"]:
        if start["probabilities"]:
            by_round[start["round"]].append(start["probabilities"])
    gaps = [abs(a - b) for ps in by_round.values() for other in ps[1:]
            for a, b in zip(ps[0], other, strict=True)]  # fmt: skip
    versions = sorted({s["model_version"] for s in results["starts"] if s["model_version"]})
    noop = " The floor scores no model: its constant answers were checked against the schema only."
    noop *= FLOOR in {s["key"] for s in results["servers"]}
    if not gaps:
        return "Only one configuration answered; nothing to compare." + noop
    n = len(next(iter(by_round.values()))[0])
    return (
        f"Before each measurement every configuration scored the same {n} applicants; all answers "
        f"validated and came from {', '.join(f'`{v}`' for v in versions)}. Largest difference in "
        f"probability of default between configurations: {max(gaps):.2g}." + noop
    )


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency against connections, one line per configuration."""
    s = Summary(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    series = sorted({k[:2] for k in s.groups}, key=lambda k: (s.order.index(k[0]), k[1]))
    for server, load in series:
        conns = sorted(g[2] for g in s.groups if g[:2] == (server, load))
        label = s.labels[server] + (" — /classify_batch x 1000" if load == "classify_batch" else "")
        for ax, metric in zip(axes, ("applicants_per_s", "p99_ms"), strict=True):
            medians = [s.median((server, load, c), metric) for c in conns]
            style = "--" if server in {FLOOR, BEFORE} else "-"  # references, not contenders
            (line,) = ax.plot(conns, medians, marker="o", linestyle=style, label=label)
            for c in conns:
                values = s.values((server, load, c), metric)
                ax.scatter([c] * len(values), values, s=10, color=line.get_color(), alpha=0.5)
    ticks = sorted({c for _, _, c in s.groups})
    titles = ("Throughput (median line, dots = rounds)", "p99 latency")
    ylabels = ("applicants scored per second", "p99 latency, ms")
    for ax, ylabel, title in zip(axes, ylabels, titles, strict=True):
        ax.set(xscale="log", yscale="log", xlabel="concurrent connections", ylabel=ylabel)
        ax.set_title(title)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    m = results["machine"]
    title = f"credit-risk-bento — {m['usable_cpus']} CPUs, wrk on the same machine, {m['date']}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room below the panels for the shared legend
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    """benchmark.json, benchmark.md and benchmark.png under `out`."""
    write_json_and_markdown(out, "benchmark", results, markdown(results))
    plot(results, out / "benchmark.png")


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/benchmark.json")
    write_report(json.loads(source.read_text()), source.parent)
