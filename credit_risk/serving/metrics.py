"""The service's own Prometheus metrics, beside BentoML's built-in request and batch metrics.

Created at import with `prometheus_client`, as BentoML 1.4 expects: its workers run in
Prometheus multiprocess mode, and its /metrics endpoint merges every worker's samples.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Gauge, Histogram

from credit_risk.decision_store.errors import CAUSES
from credit_risk.policy import COSTS, MAX_BATCH_APPLICANTS

PROBABILITY_BUCKETS: Final = tuple(
    sorted({0.02, 0.05, 0.1, round(COSTS.bayes_threshold, 4), 0.25, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0})
)
"""Probability-of-default buckets, with an edge at the policy's cost-optimal cut-off."""

INFERENCE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
"""Seconds per runner batch: the compiled scorecard takes ~0.1 ms alone, ~1 ms for 1,000 rows."""

BATCH_ROWS_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, MAX_BATCH_APPLICANTS)
"""Applicants per runner batch (BentoML's own histogram counts requests, not rows)."""

DECISIONS = Counter(
    "credit_risk_decisions",
    "Decisions made, by outcome, risk band and the model version that decided.",
    ["decision", "risk_band", "model_version"],
)
PROBABILITY = Histogram(
    "credit_risk_probability_of_default",
    "Predicted probability of default of every scored applicant.",
    buckets=PROBABILITY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "credit_risk_inference_seconds",
    "Model time per runner batch.",
    buckets=INFERENCE_BUCKETS,
)
BATCH_ROWS = Histogram(
    "credit_risk_batch_rows",
    "Applicants per runner batch.",
    buckets=BATCH_ROWS_BUCKETS,
)
REJECTED = Counter(
    "credit_risk_rejected_requests",
    "Requests to the API routes refused before scoring, by reason (validation, auth, method, "
    "body_timeout, size, media_type, overload).",
    ["reason"],
)

REQUEST_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds from a request's head to its answer: a decision takes milliseconds, and the request
deadline is 10 s."""

HTTP_REQUESTS = Counter(
    "credit_risk_http_requests",
    "Every HTTP request, by route (a served path, or `other`) and status, refusals included.",
    ["route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "credit_risk_http_request_duration_seconds",
    "Time from a request's head to its answer, by route (a served path, or `other`).",
    ["route"],
    buckets=REQUEST_SECONDS_BUCKETS,
)


RUNNER_CALL_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
"""Seconds of one API -> runner call: ~1-5 ms when the runner keeps up, 3 s is the deadline."""

RUNNER_CALL_SECONDS = Histogram(
    "credit_risk_runner_call_seconds",
    "One API -> runner call as the API worker saw it, retries included (answered calls).",
    buckets=RUNNER_CALL_BUCKETS,
)

OVERLOAD_STATUSES: Final = ("429", "503", "504")
"""The statuses of a refusal for overload."""


def start_counting(routes: Iterable[str]) -> None:
    """Create the overload series of `routes` at 0, so the first refusal is an increase that
    `rate()` and the alerts see (a series born at 1 has no increase)."""
    for route in routes:
        for status in OVERLOAD_STATUSES:
            HTTP_REQUESTS.labels(route=route, status=status)


HTTP_IN_FLIGHT = Gauge(
    "credit_risk_http_requests_in_progress",
    "Requests being answered now, by route (a served path, or `other`), over every worker.",
    ["route"],
    multiprocess_mode="livesum",
)


class RequestTally:
    """The request series, written once per event-loop turn instead of once per request.

    In BentoML's multiprocess mode every update of a prometheus_client value takes a lock, a
    `getpid()` and an mmap write, and a label lookup another lock: four updates per request cost
    ~15 us of an API worker's CPU under load (py-spy). Here a turn's requests are tallied in
    plain dicts and written in one pass when the turn ends (`call_soon`), so /metrics trails
    the requests by one turn of the event loop.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._rejected: collections.Counter[str] = collections.Counter()
        self._durations: dict[str, list[float]] = collections.defaultdict(list)
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._written: dict[str, int] = {}
        self._scheduled = False

    def in_flight(self, route: str, delta: int) -> None:
        """A request to `route` began (+1) or ended (-1)."""
        self._in_flight[route] += delta
        self._schedule()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One answered request, and its time from head to answer."""
        self._counts[route, str(status)] += 1
        self._durations[route].append(seconds)
        self._schedule()

    def count(self, route: str, status: int) -> None:
        """One request refused below the app (431, 408, 400 at the HTTP protocol)."""
        self._counts[route, str(status)] += 1
        self._schedule()

    def reject(self, reason: str) -> None:
        """One refusal on an API route."""
        self._rejected[reason] += 1
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop (a tool, a test): write at once
            self.flush()
            return
        self._scheduled = True

    def flush(self) -> None:
        """Write what this turn tallied."""
        self._scheduled = False
        counts, self._counts = self._counts, collections.Counter()
        for (route, status), n in counts.items():
            HTTP_REQUESTS.labels(route=route, status=status).inc(n)
        rejected, self._rejected = self._rejected, collections.Counter()
        for reason, n in rejected.items():
            REJECTED.labels(reason=reason).inc(n)
        durations, self._durations = self._durations, collections.defaultdict(list)
        for route, seconds in durations.items():
            observe_all(HTTP_REQUEST_SECONDS.labels(route=route), np.array(seconds))
        for route, n in self._in_flight.items():
            if self._written.get(route) != n:
                HTTP_IN_FLIGHT.labels(route=route).set(n)
                self._written[route] = n


REQUESTS: Final = RequestTally()
"""This process's tally of the request series."""


MODEL_INFO = Gauge(
    "credit_risk_model_info",
    "1 for the model version this process serves.",
    ["model_version"],
    multiprocess_mode="livemax",
)
DRIFT_PSI = Gauge(
    "credit_risk_drift_psi",
    "Population stability index of the recent window against training, per signal.",
    ["signal"],
    multiprocess_mode="livemax",
)
DRIFT_WINDOW = Gauge(
    "credit_risk_drift_window_size",
    "Applicants in the drift window (PSI is reported once it is full).",
    multiprocess_mode="livemax",
)

SCORE_DIFFERENCE_BUCKETS: Final = (-60, -40, -20, -10, -5, -2, 0, 2, 5, 10, 20, 40, 60)
"""Challenger minus champion score points; 20 points double the odds (the policy's PDO)."""

SHADOW_COMPARISONS = Counter(
    "credit_risk_shadow_comparisons",
    "Champion and challenger decisions on the same applicant: agree, swap_in (only the "
    "challenger approves) or swap_out (only the champion approves).",
    ["champion", "challenger", "comparison"],
)
SHADOW_DECISIONS = Counter(
    "credit_risk_shadow_decisions",
    "The challenger's decisions in shadow, by outcome (its approval rate beside the champion's).",
    ["champion", "challenger", "decision"],
)
SHADOW_SCORE_DIFFERENCE = Histogram(
    "credit_risk_shadow_score_difference",
    "Challenger score minus champion score, in points, per shadow-scored applicant.",
    ["champion", "challenger"],
    buckets=SCORE_DIFFERENCE_BUCKETS,
)
SHADOW_FAILURES = Counter(
    "credit_risk_shadow_failures",
    "Applicants whose challenger record was lost to an error (the champion still answered), "
    "by stage: score (runner) or decide (API).",
    ["champion", "challenger", "stage"],
)

DECISION_STORE_ERROR_CAUSES: Final = CAUSES
"""Why a write to the decision store failed. Each starts at 0 in every process, so the first
error is an increase that `rate()` and the alert see (a series born at 1 has no increase)."""

DECISION_STORE_ERRORS = Counter(
    "credit_risk_decision_store_errors",
    "Writes the decision store refused (each refused its requests with 503), by cause: "
    + ", ".join(CAUSES)
    + ".",
    ["cause"],
)
for _cause in DECISION_STORE_ERROR_CAUSES:
    DECISION_STORE_ERRORS.labels(cause=_cause)


def observe_all(histogram: Any, values: npt.NDArray[np.float64]) -> None:
    """`histogram.observe(v)` for every value, with one update per bucket touched.

    In BentoML's multiprocess mode every update of a prometheus_client value takes a lock and a
    `getpid()` system call (its fork check): ~8 us each on our 2-core machine, so two per
    observed row were most of shadow scoring's cost per runner batch (cProfile). This uses the
    child's internal per-bucket values (prometheus_client 0.2x: `_upper_bounds`, `_buckets`,
    non-cumulative, and `_sum`); tests/serving/test_shadow.py checks it against `observe`.
    """
    counts = np.bincount(
        np.searchsorted(histogram._upper_bounds, values, side="left"),
        minlength=len(histogram._upper_bounds),
    )
    for i in np.flatnonzero(counts).tolist():
        histogram._buckets[i].inc(int(counts[i]))
    histogram._sum.inc(float(np.sum(values)))
