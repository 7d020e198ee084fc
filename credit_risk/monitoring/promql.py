"""The series the dashboard and the alerts read, and the PromQL both build from them.

One expression per quantity (error ratio, approval rate, agreement...), so a panel shows exactly
what its alert fires on. A `Scope` says where an expression looks and what it keeps apart: the
alerts one result per deployment (`namespace`, `job`), the dashboard whatever its variables
select.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

API_SERVICE: Final = "credit_risk_service"
"""BentoML's `service_name` of the API workers (service.py)."""
RUNNER_SERVICE: Final = "credit_scorer"
"""BentoML's `service_name` of the runner worker (service.py)."""
API_ROUTES: Final = ("/classify", "/classify_batch", "/model_card")
SCORING_ROUTES: Final = ("/classify", "/classify_batch")
OVERLOAD: Final = ("429", "503", "504")
"""Statuses of a request refused for overload (the edge's metrics pre-create them)."""

REQUESTS: Final = "credit_risk_http_requests_total"
REQUEST_SECONDS: Final = "credit_risk_http_request_duration_seconds"
RUNNER_CALL_SECONDS: Final = "credit_risk_runner_call_seconds"
ADAPTIVE_BATCH_SIZE: Final = "bentoml_service_adaptive_batch_size"
REJECTED: Final = "credit_risk_rejected_requests_total"
DECISIONS: Final = "credit_risk_decisions_total"
SHADOW_DECISIONS: Final = "credit_risk_shadow_decisions_total"
SHADOW_COMPARISONS: Final = "credit_risk_shadow_comparisons_total"
PROBABILITY: Final = "credit_risk_probability_of_default"
INFERENCE_SECONDS: Final = "credit_risk_inference_seconds"
BATCH_ROWS: Final = "credit_risk_batch_rows"
DRIFT_PSI: Final = "credit_risk_drift_psi"
DRIFT_WINDOW: Final = "credit_risk_drift_window_size"
MODEL_INFO: Final = "credit_risk_model_info"
STORE_ERRORS: Final = "credit_risk_decision_store_errors_total"
PROCESS_CPU: Final = "process_cpu_seconds_total"
PROCESS_RSS: Final = "process_resident_memory_bytes"
PROCESS_OPEN_FDS: Final = "process_open_fds"
PROCESS_MAX_FDS: Final = "process_max_fds"
PROCESS_START: Final = "process_start_time_seconds"

WORKER: Final = ("service_name", "worker_index")
"""The labels that tell one worker process from another (serving/process_metrics.py)."""


def one_of(values: tuple[str, ...]) -> str:
    """A regex matching exactly these label values."""
    return "|".join(values)


API_REQUEST: Final = f'route=~"{one_of(API_ROUTES)}"'
OUR_WORKERS: Final = f'service_name=~"{one_of((API_SERVICE, RUNNER_SERVICE))}"'


@dataclass(frozen=True)
class Scope:
    """Where an expression looks (extra label matchers), what it keeps apart (`by`), and over
    which range it takes rates."""

    matchers: str = ""
    by: tuple[str, ...] = ()
    window: str = "5m"

    def over(self, window: str) -> Scope:
        """The same scope over another range."""
        return replace(self, window=window)

    def series(self, name: str, *matchers: str) -> str:
        """`name{...}` with this scope's matchers and the given ones."""
        given = ", ".join(m for m in (*matchers, self.matchers) if m)
        return f"{name}{{{given}}}" if given else name

    def rate(self, name: str, *matchers: str) -> str:
        """Per-second rate of a counter over this scope's window."""
        return f"rate({self.series(name, *matchers)}[{self.window}])"

    def total(self, expr: str, *keep: str, op: str = "sum") -> str:
        """`expr` aggregated down to this scope's labels and `keep`."""
        labels = ", ".join((*self.by, *keep))
        return f"{op} by ({labels}) ({expr})" if labels else f"{op}({expr})"


def requests(scope: Scope, *keep: str) -> str:
    """API requests per second, refusals included (counted at the edge, every status)."""
    return scope.total(scope.rate(REQUESTS, API_REQUEST), *keep)


def error_ratio(scope: Scope) -> str:
    """Share of API requests answered 5xx (refusals for overload among them)."""
    errors = scope.total(scope.rate(REQUESTS, API_REQUEST, 'status=~"5.."'))
    return f"{errors}\n/\n{requests(scope)}"


def answered_rate(scope: Scope, *routes: str) -> str:
    """Requests per second to `routes` answered 200."""
    return scope.total(scope.rate(REQUESTS, f'route=~"{one_of(routes)}"', 'status="200"'))


def overload_refusals(scope: Scope) -> str:
    """Requests per second refused for overload: 429 (admission, body budget, validation
    lane), 503 and 504."""
    return scope.total(scope.rate(REQUESTS, API_REQUEST, f'status=~"{one_of(OVERLOAD)}"'))


def overload_ratio(scope: Scope) -> str:
    """Overload refusals against requests offered (every request is counted at the edge)."""
    return f"{overload_refusals(scope)}\n/\n{requests(scope)}"


def latency_quantile(quantile: float, scope: Scope, routes: tuple[str, ...], *keep: str) -> str:
    """Latency quantile of requests to `routes`, head to answer, as the edge timed them."""
    rate = scope.rate(f"{REQUEST_SECONDS}_bucket", f'route=~"{one_of(routes)}"')
    return f"histogram_quantile({quantile}, {scope.total(rate, *keep, 'le')})"


def histogram_quantile(quantile: float, scope: Scope, histogram: str, *matchers: str) -> str:
    """A quantile of one of our histograms over the scope's window."""
    rate = scope.rate(f"{histogram}_bucket", *matchers)
    return f"histogram_quantile({quantile}, {scope.total(rate, 'le')})"


def approval_ratio(scope: Scope, *keep: str) -> str:
    """Share of the champion's decisions that approve."""
    approved = scope.total(scope.rate(DECISIONS, 'decision="approve"'), *keep)
    return f"{approved}\n/\n{scope.total(scope.rate(DECISIONS), *keep)}"


def challenger_approval_ratio(scope: Scope) -> str:
    """Share of the challenger's shadow decisions that approve, per champion and challenger."""
    approved = scope.total(
        scope.rate(SHADOW_DECISIONS, 'decision="approve"'), "champion", "challenger"
    )
    decided = scope.total(scope.rate(SHADOW_DECISIONS), "champion", "challenger")
    return f"{approved}\n/\n{decided}"


def agreement_ratio(scope: Scope) -> str:
    """Share of shadow-scored applicants on whom champion and challenger decide alike."""
    agreed = scope.total(
        scope.rate(SHADOW_COMPARISONS, 'comparison="agree"'), "champion", "challenger"
    )
    compared = scope.total(scope.rate(SHADOW_COMPARISONS), "champion", "challenger")
    return f"{agreed}\n/\n{compared}"


def counted(scope: Scope, counter: str, *keep: str) -> str:
    """How much a counter grew over the scope's window (a volume floor for ratios)."""
    return scope.total(f"increase({scope.series(counter)}[{scope.window}])", *keep)


def drift_psi(scope: Scope) -> str:
    """The PSI of every monitored signal (the score and each field)."""
    return scope.total(scope.series(DRIFT_PSI), "signal", op="max")


def worker_restarts(scope: Scope, *services: str) -> str:
    """How often each worker of `services` started anew within the scope's window."""
    started = scope.series(PROCESS_START, f'service_name=~"{one_of(services)}"')
    return scope.total(f"changes({started}[{scope.window}])", "instance", "pod", *WORKER)


def store_errors(scope: Scope) -> str:
    """Decisions whose record could not be stored, per cause, over the scope's window."""
    errors = scope.series(STORE_ERRORS)
    return scope.total(f"increase({errors}[{scope.window}])", "cause")
