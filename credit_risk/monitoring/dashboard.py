"""The service's Grafana dashboard (deploy/monitoring/grafana-dashboard.json).

The data source is a template variable, so the JSON names no server: import it and pick the
Prometheus that scrapes the service. `namespace` and `job` narrow it to one deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from credit_risk.monitoring import promql
from credit_risk.monitoring.alerts import (
    ERROR_RATIO_MAX,
    LATENCY_OBJECTIVE_S,
    OVERLOAD_RATIO_MAX,
)
from credit_risk.monitoring.promql import Scope
from credit_risk.stability import PSI_ALERT, PSI_WATCH

UID: Final = "credit-risk-service"
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
SCOPE: Final = Scope(matchers='namespace=~"$namespace", job=~"$job"', window="$__rate_interval")
WORKER_LEGEND: Final = "{{instance}} {{service_name}}/{{worker_index}}"
WIDTH, HEIGHT = 12, 8
"""Two panels side by side on Grafana's 24-column grid."""


@dataclass(frozen=True)
class Query:
    """One PromQL target and how its series are named in the legend."""

    expr: str
    legend: str
    instant: bool = False
    heatmap: bool = False

    def target(self, ref: str) -> dict[str, Any]:
        """The panel target Grafana stores."""
        return {
            "refId": ref,
            "datasource": DATASOURCE,
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": not self.instant,
            "instant": self.instant,
            "format": "heatmap" if self.heatmap else "time_series",
        }


@dataclass(frozen=True)
class Panel:
    """A panel: what it answers (its description) and the queries that show it."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    lines: tuple[float, ...] = ()
    """Thresholds drawn as lines (alert levels)."""

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        """The panel as Grafana's dashboard model has it."""
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        colors = ("orange", "red") if len(self.lines) > 1 else ("red",)
        steps += [{"color": c, "value": v} for c, v in zip(colors, self.lines, strict=False)]
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "color": {"mode": "palette-classic"},
            "thresholds": {"mode": "absolute", "steps": steps},
        }
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "thresholdsStyle": {"mode": "line" if self.lines else "off"},
            }
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": HEIGHT, "w": WIDTH, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": _options(self.kind),
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
        }


def _options(kind: str) -> dict[str, Any]:
    last = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "heatmap":
        return {
            "calculate": False,
            "yAxis": {"unit": "percentunit"},
            "color": {"mode": "scheme", "scheme": "Oranges"},
            "cellGap": 1,
        }
    if kind == "bargauge":
        return {"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": last}
    return {"textMode": "name", "colorMode": "none", "reduceOptions": last}  # stat


def _quantiles(histogram: str, what: str) -> tuple[Query, ...]:
    return tuple(
        Query(promql.histogram_quantile(q, SCOPE, histogram), f"p{q * 100:.0f} {what}")
        for q in (0.5, 0.99)
    )


def _mean(histogram: str) -> str:
    """Mean observation of a histogram over the window (its sum over its count)."""
    sums = SCOPE.total(SCOPE.rate(f"{histogram}_sum"))
    return f"{sums}\n/\n{SCOPE.total(SCOPE.rate(f'{histogram}_count'))}"


def _increase(series: str, window: str, *keep: str) -> str:
    return SCOPE.total(f"increase({SCOPE.series(series)}[{window}])", *keep)


def _per_worker(gauge: str, op: str = "max") -> str:
    series = SCOPE.series(gauge, promql.OUR_WORKERS)
    return SCOPE.total(series, "instance", *promql.WORKER, op=op)


def traffic() -> list[Panel]:
    """Requests, refusals, latency, errors: is the API answering, and fast enough?"""
    latencies = tuple(
        Query(
            promql.latency_quantile(q, SCOPE, promql.SCORING_ROUTES, "route"),
            f"p{q * 100:.0f} {{{{route}}}}",
        )
        for q in (0.5, 0.9, 0.99)
    )
    return [
        Panel(
            "Requests per second",
            "API requests by route and status, refusals included (counted at the edge).",
            (Query(promql.requests(SCOPE, "route", "status"), "{{route}} {{status}}"),),
            unit="reqps",
        ),
        Panel(
            "Refusals by cause",
            "Requests refused before scoring: validation (400), auth (401), size (413), "
            "media_type (415), method (405), body_timeout (408), overload (429/503/504).",
            (Query(SCOPE.total(SCOPE.rate(promql.REJECTED), "reason"), "{{reason}}"),),
            unit="reqps",
        ),
        Panel(
            "Latency percentiles",
            "p50, p90 and p99 from a request's head to its answer, per route; the line is the "
            "/classify p99 objective.",
            latencies,
            unit="s",
            lines=(LATENCY_OBJECTIVE_S,),
        ),
        Panel(
            "Error and overload ratios",
            "Share of API requests answered 5xx, and share of offered requests refused for "
            "overload; the lines are the two alert levels.",
            (
                Query(promql.error_ratio(SCOPE), "5xx"),
                Query(promql.overload_ratio(SCOPE), "refused for overload"),
            ),
            unit="percentunit",
            lines=(ERROR_RATIO_MAX, OVERLOAD_RATIO_MAX),
        ),
    ]


def runner() -> list[Panel]:
    """How the runner batches and how long scoring takes."""
    return [
        Panel(
            "Runner batch size",
            "Applicants per runner batch (mean, p99), and API calls merged into one batch by "
            "BentoML's adaptive batching (mean).",
            (
                Query(_mean(promql.BATCH_ROWS), "mean applicants"),
                Query(promql.histogram_quantile(0.99, SCOPE, promql.BATCH_ROWS), "p99 applicants"),
                Query(_mean(promql.ADAPTIVE_BATCH_SIZE), "mean calls per batch"),
            ),
        ),
        Panel(
            "Runner time",
            "Model time per batch (p50, p99) and the whole API-to-runner call as the API worker "
            "saw it (p99).",
            (
                *_quantiles(promql.INFERENCE_SECONDS, "model"),
                Query(
                    promql.histogram_quantile(0.99, SCOPE, promql.RUNNER_CALL_SECONDS),
                    "p99 runner call",
                ),
            ),
            unit="s",
        ),
    ]


def decisions() -> list[Panel]:
    """What the models decide: volumes, approval rates, the score distribution, bands."""
    return [
        Panel(
            "Decisions per second by model",
            "The champion's decisions, by the model version that made them.",
            (
                Query(
                    SCOPE.total(SCOPE.rate(promql.DECISIONS), "model_version", "decision"),
                    "{{model_version}} {{decision}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Approval rate by model",
            "Share of approvals: the champion's answers per model version, and the "
            "challenger's shadow decisions on the same applicants.",
            (
                Query(promql.approval_ratio(SCOPE, "model_version"), "champion {{model_version}}"),
                Query(promql.challenger_approval_ratio(SCOPE), "challenger {{challenger}}"),
            ),
            unit="percentunit",
        ),
        Panel(
            "Probability of default: distribution",
            "Scored applicants per P(default) bucket over time; a bucket edge sits at the "
            "policy's cost-optimal cut-off.",
            (
                Query(
                    _increase(f"{promql.PROBABILITY}_bucket", SCOPE.window, "le"),
                    "{{le}}",
                    heatmap=True,
                ),
            ),
            kind="heatmap",
        ),
        Panel(
            "Risk bands over the time range",
            "The champion's decisions per risk band (A best) over the dashboard's range.",
            (
                Query(
                    _increase(promql.DECISIONS, "$__range", "risk_band"),
                    "{{risk_band}}",
                    instant=True,
                ),
            ),
            kind="bargauge",
        ),
    ]


def model_health() -> list[Panel]:
    """Drift, the challenger's agreement, the decision store, and which model is served."""
    return [
        Panel(
            "Input drift: PSI per signal",
            "Population stability of the runner's recent window against training, for the "
            "score and every field (shown once the window is full); lines at 0.1 (watch) and "
            "0.25 (alert).",
            (Query(promql.drift_psi(SCOPE), "{{signal}}"),),
            lines=(PSI_WATCH, PSI_ALERT),
        ),
        Panel(
            "Champion / challenger agreement",
            "Share of shadow-scored applicants on whom champion and challenger decide alike.",
            (Query(promql.agreement_ratio(SCOPE), "{{champion}} vs {{challenger}}"),),
            unit="percentunit",
        ),
        Panel(
            "Decision-store errors by cause",
            "Decisions whose record could not be stored; anything above 0 pages.",
            (Query(promql.store_errors(SCOPE), "{{cause}}"),),
            lines=(1,),
        ),
        Panel(
            "Served model",
            "The champion version each pod serves.",
            (
                Query(
                    SCOPE.total(SCOPE.series(promql.MODEL_INFO), "model_version", op="max"),
                    "{{model_version}}",
                    instant=True,
                ),
            ),
            kind="stat",
        ),
    ]


def workers() -> list[Panel]:
    """Each API worker and the runner as processes (serving/process_metrics.py)."""
    cpu = SCOPE.rate(promql.PROCESS_CPU, promql.OUR_WORKERS)
    restarts = promql.worker_restarts(SCOPE.over("15m"), promql.API_SERVICE, promql.RUNNER_SERVICE)
    fds = f"{_per_worker(promql.PROCESS_OPEN_FDS)}\n/\n{_per_worker(promql.PROCESS_MAX_FDS)}"
    return [
        Panel(
            "CPU per worker",
            "CPU cores used by each API worker and the runner.",
            (Query(SCOPE.total(cpu, "instance", *promql.WORKER), WORKER_LEGEND),),
        ),
        Panel(
            "Resident memory per worker",
            "Resident set size of each worker process.",
            (Query(_per_worker(promql.PROCESS_RSS), WORKER_LEGEND),),
            unit="bytes",
        ),
        Panel(
            "Open file descriptors per worker",
            "Open descriptors as a share of the worker's limit (connections count).",
            (Query(fds, WORKER_LEGEND),),
            unit="percentunit",
        ),
        Panel(
            "Worker restarts (15 min)",
            "Times each worker process started anew within 15 minutes (a runner restart alerts).",
            (Query(restarts, WORKER_LEGEND),),
        ),
    ]


def sections() -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows and their panels, top to bottom."""
    return [
        ("Traffic and latency", traffic()),
        ("Runner", runner()),
        ("Decisions", decisions()),
        ("Model health", model_health()),
        ("Worker processes", workers()),
    ]


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": name},
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {},
        "options": [],
        "hide": 0,
    }


def variables() -> list[dict[str, Any]]:
    """Data source, then the deployment: namespace and job."""
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        _variable("namespace", "Namespace", f"label_values({promql.MODEL_INFO}, namespace)"),
        _variable(
            "job", "Job", f'label_values({promql.MODEL_INFO}{{namespace=~"$namespace"}}, job)'
        ),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard model, ready for Grafana's import or provisioning."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, section in sections():
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, panel in enumerate(section):
            panels.append(panel.to_json(len(panels) + 1, (i % 2) * WIDTH, y + (i // 2) * HEIGHT))
        y += HEIGHT * ((len(section) + 1) // 2)
    return {
        "uid": UID,
        "title": "Credit risk service",
        "description": "Traffic, refusals, latency, runner batching, decisions, drift, "
        "champion/challenger and worker processes of the credit-risk scoring service.",
        "tags": ["credit-risk", "bentoml"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables()},
        "panels": panels,
    }
