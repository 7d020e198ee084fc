"""When and how long to wait before sending a refused request again.

Only errors raised before anything was scored are retried (`CreditRiskError.retry_safe`: 429,
503, no connection). The wait is at least the server's Retry-After, plus a random share of an
exponential backoff so that clients refused together do not all return together; without
Retry-After it is the backoff alone (full jitter). Tries and the total time are both bounded:
a wait that would end past `max_total_s` is not started, and the error is raised instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from credit_risk.client.errors import APIError, CreditRiskError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one call; `RetryPolicy(max_attempts=1)` never retries."""

    max_attempts: int = 6
    """Tries in all, the first included."""
    max_total_s: float = 30.0
    """Longest a call may spend, waits included, before the last error is raised."""
    backoff_s: float = 0.1
    """The backoff's first step; it doubles each try."""
    max_backoff_s: float = 2.0
    """The largest backoff step (the random part added to Retry-After stays below it)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            msg = f"max_attempts must be at least 1, got {self.max_attempts}"
            raise ValueError(msg)
        if min(self.max_total_s, self.backoff_s, self.max_backoff_s) < 0:
            msg = "max_total_s, backoff_s and max_backoff_s must not be negative"
            raise ValueError(msg)

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait after failed try number `attempt` (1-based): Retry-After plus jitter."""
        step = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        jitter = random.uniform(0, step)  # noqa: S311 (spreading retries, not a secret)
        return (retry_after_s or 0.0) + jitter

    def start(self, clock: Callable[[], float] = time.monotonic) -> RetrySchedule:
        """The schedule of one call, started now."""
        return RetrySchedule(self, clock)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: what refused try `attempt`, and how long the client waits."""

    attempt: int
    error: CreditRiskError
    delay_s: float

    @property
    def status(self) -> int | None:
        """The refusal's HTTP status (None when no connection could be made)."""
        return self.error.status

    @property
    def retry_after_s(self) -> float | None:
        """What the server's Retry-After asked for, if it sent one."""
        return self.error.retry_after_s if isinstance(self.error, APIError) else None


class RetrySchedule:
    """One call's tries so far, and whether the next one fits the policy."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.started = clock()
        self.attempt = 0

    def after(self, error: CreditRiskError) -> RetryEvent | None:
        """The retry to make after `error`, or None when `error` is final."""
        self.attempt += 1
        if not error.retry_safe or self.attempt >= self.policy.max_attempts:
            return None
        retry_after = error.retry_after_s if isinstance(error, APIError) else None
        delay = self.policy.delay_s(self.attempt, retry_after)
        if self.clock() - self.started + delay > self.policy.max_total_s:
            return None
        return RetryEvent(self.attempt, error, delay)
