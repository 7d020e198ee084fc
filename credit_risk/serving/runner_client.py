"""The API worker's call to the model runner: coalesced, retried, and bounded by a deadline.

Scoring is pure, so a call whose connection dropped is simply sent again; a call still
unanswered at the deadline is a clear 503 for the caller, never a 500 or a long hold, and says
truly why: `RunnerUnavailableError` when the runner cannot be reached or is not ready,
`RunnerBusyError` when it is ready but the answer did not come in time (the worker's event loop
or the runner was too busy). Calls from one event-loop turn travel together
(serving/coalesce.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from credit_risk.arrays import FloatArray
from credit_risk.serving import metrics
from credit_risk.serving.coalesce import Coalescer
from credit_risk.serving.tuning import (
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_GRACE_S,
    RUNNER_DEADLINE_S,
    RUNNER_MAX_BATCH_SIZE,
    RUNNER_READY_PROBE_S,
    RUNNER_RETRY_BACKOFF_S,
)

RETRIED = (
    aiohttp.ClientConnectionError,  # dropped or refused connection
    aiohttp.ClientPayloadError,  # runner died mid-answer
    ConnectionError,
)
"""Failures of the hop itself, after which the same call is sent again."""


class RunnerUnavailableError(Exception):
    """The model runner could not be reached, or is not ready; nothing was scored."""


class RunnerBusyError(Exception):
    """The model runner is ready but its answer did not arrive within the deadline: this
    worker or the runner is overloaded; nothing was scored."""


class RunnerClient:
    """Scores code rows on the runner (BentoML's dependency proxy), one call per loop turn."""

    def __init__(self, runner: Any, *, coalesce: bool) -> None:
        self._runner = runner
        coalescer = Coalescer(self._call, max_rows=RUNNER_MAX_BATCH_SIZE)
        self.score = coalescer.submit if coalesce else self._call
        """`await score(codes)`: the runner's rows for `codes`, in order."""

    async def _call(self, codes: FloatArray) -> FloatArray:
        start = time.perf_counter()
        call = asyncio.ensure_future(self._attempts(codes))
        done, _ = await asyncio.wait({call}, timeout=RUNNER_DEADLINE_S)
        if not done:  # an event loop that was blocked may hold the answer unread: a last look
            done, _ = await asyncio.wait({call}, timeout=RUNNER_DEADLINE_GRACE_S)
        if done:
            result: FloatArray = call.result()
            metrics.RUNNER_CALL_SECONDS.observe(time.perf_counter() - start)
            return result
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, *RETRIED):
            await call
        if await self._runner_ready():
            raise RunnerBusyError
        raise RunnerUnavailableError

    async def _attempts(self, codes: FloatArray) -> FloatArray:
        failure: Exception | None = None
        for attempt in range(RUNNER_CALL_ATTEMPTS):
            try:
                # looked up per call: the remote client learns its endpoints once connected
                result: FloatArray = await self._runner.to_async.score(codes)
                return result
            except RETRIED as exc:
                failure = exc
                await asyncio.sleep(RUNNER_RETRY_BACKOFF_S * attempt)
        raise RunnerUnavailableError from failure

    async def _runner_ready(self) -> bool:
        """Whether the runner answers its readiness probe now (BentoML's /readyz)."""
        try:
            async with asyncio.timeout(RUNNER_READY_PROBE_S):
                return bool(await self._runner.is_ready(timeout=RUNNER_READY_PROBE_S))
        except Exception:  # any failure to answer is "not ready"
            return False
