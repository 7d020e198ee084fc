"""The retry policy: which errors, how long (Retry-After first), and both bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from credit_risk.client import (
    AuthError,
    NoAnswerError,
    RetryPolicy,
    ServiceBusyError,
    ServiceUnavailableError,
    ServiceUnreachableError,
)
from credit_risk.client.errors import retry_after_s


class Clock:
    """A clock the test moves by hand: the schedule's only notion of time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_errors_raised_before_scoring_are_retried() -> None:
    policy = RetryPolicy(max_attempts=10)
    for retried in (
        ServiceBusyError(429, "busy", retry_after_s=1),
        ServiceUnavailableError(503, "down"),
        ServiceUnreachableError("refused"),
    ):
        assert policy.start().after(retried) is not None, retried
    for final in (AuthError(401, "no"), NoAnswerError("timed out")):
        assert policy.start().after(final) is None, final


def test_the_wait_is_retry_after_plus_a_jitter_below_the_backoff_step() -> None:
    policy = RetryPolicy(max_attempts=50, max_total_s=1e9, backoff_s=0.1, max_backoff_s=2.0)
    schedule = policy.start(Clock())
    waits = [schedule.after(ServiceBusyError(429, "busy", retry_after_s=3)) for _ in range(8)]
    for attempt, event in enumerate(waits, start=1):
        assert event is not None
        assert event.attempt == attempt
        step = min(2.0, 0.1 * 2 ** (attempt - 1))
        assert 3 <= event.delay_s <= 3 + step
        assert event.retry_after_s == 3
        assert event.status == 429


def test_without_retry_after_the_wait_is_the_backoff_alone() -> None:
    policy = RetryPolicy(max_attempts=50, max_total_s=1e9, backoff_s=0.1, max_backoff_s=0.4)
    schedule = policy.start(Clock())
    for attempt in range(1, 8):
        event = schedule.after(ServiceUnavailableError(503, "down"))
        assert event is not None
        assert 0 <= event.delay_s <= min(0.4, 0.1 * 2 ** (attempt - 1))


def test_tries_are_bounded() -> None:
    schedule = RetryPolicy(max_attempts=3, max_total_s=1e9).start(Clock())
    busy = ServiceBusyError(429, "busy", retry_after_s=1)
    assert schedule.after(busy) is not None
    assert schedule.after(busy) is not None
    assert schedule.after(busy) is None
    assert RetryPolicy(max_attempts=1).start().after(busy) is None


def test_a_wait_that_would_end_past_the_budget_is_not_started() -> None:
    clock = Clock()
    schedule = RetryPolicy(max_attempts=100, max_total_s=10, max_backoff_s=0).start(clock)
    busy = ServiceBusyError(429, "busy", retry_after_s=4)
    assert schedule.after(busy) is not None  # 0 + 4 <= 10
    clock.now += 5
    assert schedule.after(busy) is not None  # 5 + 4 <= 10
    clock.now += 4
    assert schedule.after(busy) is None  # 9 + 4 > 10
    long_wait = ServiceBusyError(429, "busy", retry_after_s=3600)
    assert RetryPolicy().start().after(long_wait) is None


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(backoff_s=-1)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_s("1") == 1.0
    assert retry_after_s(" 120 ") == 120.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after_s(later)
    assert wait is not None
    assert 20 < wait <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert retry_after_s(past) == 0.0
    for unusable in (None, "", "soon", "-1", "1.5"):
        assert retry_after_s(unusable) is None, unusable
