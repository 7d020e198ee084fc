"""Service settings from environment variables, with defaults that work with no configuration.

BentoML's own knobs (workers, traffic, timeouts) stay in BentoML's config (`BENTOML_CONFIG`,
`BENTOML_CONFIG_OVERRIDES`); these are the ones BentoML has no place for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from credit_risk.decision_store import StoreError, store_url
from credit_risk.model_store import DEFAULT_TAG
from credit_risk.policy import MAX_BATCH_APPLICANTS
from credit_risk.promotion import served_tags
from credit_risk.serving.drift import DEFAULT_WINDOW as DEFAULT_DRIFT_WINDOW

RUNNER_MAX_BATCH_SIZE: Final = MAX_BATCH_APPLICANTS
"""Rows per adaptive batch. The compiled scorecard scores 1,000 rows in well under a
millisecond, so the bound is there to keep one batch request a single runner call."""

DEFAULT_MAX_IN_FLIGHT: Final = 64
"""Requests one API worker admits at once before it sheds with 429
(credit_risk/serving/workarounds/admission_gate.py).
Little's law: a saturated 2-core host serves ~700 requests/s under a flood, so 2 x 64 admitted
requests queue ~0.2 s and their p99 stays well inside the documented 1 s; 128 per worker
measured a p99 of 2.1 s, and 16 refused some requests at half load (`make overload`). The 64
connections of the load benchmark fit; a closed loop of 256 connections is half refused."""

BODY_READ_TIMEOUT_S: Final = 5.0
"""Longest a request's body may take to arrive, from its headers to its last byte; past it the
admission gate answers 408 and closes the connection. A batch of 1,000 applicants (~0.3 MB)
needs 5 s only below ~0.5 Mbit/s; a client that stalls mid-body holds nothing but its
connection meanwhile (docs/reliability.md, "Stalled and idle clients")."""

DEFAULT_MAX_CONNECTIONS: Final = 4096
"""Client connections one worker holds open at most (credit_risk/serving/connections.py). An
idle connection costs ~10 KB; 2,000 idle keep-alive connections leave service untouched
(tests/service/test_stalled_clients.py). Further connections are closed as they arrive."""

KEEP_ALIVE_TIMEOUT_S: Final = 5
"""Uvicorn closes a connection idle this long after its last response (BentoML's default,
changed only by `bentoml serve --timeout-keep-alive`; there is no config key for it)."""

REQUEST_TIMEOUT_S: Final = 10
"""BentoML `traffic.timeout`: a request still unanswered after this gets 504."""

RUNNER_CALL_ATTEMPTS: Final = 3
"""Tries of one API -> runner call. Under bursts the internal keep-alive connection is
sometimes closed under a request (aiohttp `Cannot write to closing transport`); one retry on a
fresh connection succeeds. A runner that is down fails all three within ~0.1 s -> 503."""

RUNNER_DEADLINE_S: Final = 3.0
"""Longest one request waits for the runner (all tries together). A killed runner is back in
~9-14 s (the supervisor checks every 10 s), far past what a caller should be held; past this
the request gets a 503 with Retry-After and nothing scored (tests/service/test_faults.py)."""

RUNNER_RETRY_BACKOFF_S: Final = 0.05
"""Pause before the second try (doubled before the third)."""

DRIFT_PUBLISH_INTERVAL_S: Final = 0.5
"""The drift gauges are recomputed at most this often (and always this soon after traffic):
a PSI per signal on every runner batch cost ~6 % of the runner's time under load."""

RUNNER_MAX_LATENCY_MS: Final = 1000
"""BentoML's admission bound for the runner queue: a row that cannot be scored within this is
shed with 503 (it is not a flush timer). Sized from the load benchmark."""


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    msg = f"expected a boolean (1/0, true/false, on/off), got {value!r}"
    raise ValueError(msg)


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)
    return number


def _tokens(value: str | None) -> frozenset[str]:
    return frozenset(t.strip() for t in (value or "").split(",") if t.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, validated once at start-up."""

    model_tag: str = DEFAULT_TAG
    challenger_tag: str | None = None
    model_source: str = "default"
    challenger_source: str = "none named"
    batching: bool = True
    coalescing: bool = True
    api_tokens: frozenset[str] = field(default_factory=frozenset)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    drift_window: int = DEFAULT_DRIFT_WINDOW
    decision_store: str = ""
    """The decision store's URL: CREDIT_RISK_DECISION_STORE, or the contents of the file
    CREDIT_RISK_DECISION_STORE_FILE names (a mounted Secret), else SQLite under the BentoML home
    (credit_risk/decision_store/location.py)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """CREDIT_RISK_MODEL, _CHALLENGER (else the promotion state), _BATCHING, _COALESCING,
        _API_TOKENS, _MAX_IN_FLIGHT, _MAX_CONNECTIONS, _DRIFT_WINDOW, _DECISION_STORE(_FILE)."""
        served = served_tags(environ)
        return cls(
            model_tag=served.champion,
            challenger_tag=served.challenger,
            model_source=served.champion_source,
            challenger_source=served.challenger_source,
            batching=_flag(environ.get("CREDIT_RISK_BATCHING"), default=True),
            coalescing=_flag(environ.get("CREDIT_RISK_COALESCING"), default=True),
            api_tokens=_tokens(environ.get("CREDIT_RISK_API_TOKENS")),
            max_in_flight=_positive_int(
                "CREDIT_RISK_MAX_IN_FLIGHT",
                environ.get("CREDIT_RISK_MAX_IN_FLIGHT"),
                DEFAULT_MAX_IN_FLIGHT,
            ),
            max_connections=_positive_int(
                "CREDIT_RISK_MAX_CONNECTIONS",
                environ.get("CREDIT_RISK_MAX_CONNECTIONS"),
                DEFAULT_MAX_CONNECTIONS,
            ),
            drift_window=_positive_int(
                "CREDIT_RISK_DRIFT_WINDOW",
                environ.get("CREDIT_RISK_DRIFT_WINDOW"),
                DEFAULT_DRIFT_WINDOW,
            ),
            decision_store=_decision_store(environ),
        )


def _decision_store(environ: Mapping[str, str]) -> str:
    try:
        return store_url(environ)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
