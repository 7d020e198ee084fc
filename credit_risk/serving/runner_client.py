"""The API worker's call to the model runner: retried, and bounded by a deadline.

Scoring is pure, so a call whose connection dropped is simply sent again; a call still
unanswered at the deadline is a clear 503 for the caller, never a 500 or a long hold, and says
truly why: `RunnerUnavailableError` when the runner cannot be reached or is not ready,
`RunnerBusyError` when it is ready but the answer did not come in time (the worker's event loop
or the runner was too busy). Rows travel as raw float64 bytes on a kept-alive connection
(workarounds/runner_hop.py); a runner resolved in-process (tests, scripts) is called directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from credit_risk.arrays import FloatArray
from credit_risk.serving import metrics
from credit_risk.serving.tuning import (
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_GRACE_S,
    RUNNER_DEADLINE_S,
    RUNNER_READY_PROBE_S,
    RUNNER_RETRY_BACKOFF_S,
)
from credit_risk.serving.workarounds.runner_hop import SCORE_PATH, RowsClient, RunnerShedError

RETRIED = (
    aiohttp.ClientConnectionError,  # dropped or refused connection
    aiohttp.ClientPayloadError,  # runner died mid-answer
    ConnectionError,
)
"""Failures of the hop itself, after which the same call is sent again."""

Call = Callable[[FloatArray], Awaitable[FloatArray]]


class RunnerUnavailableError(Exception):
    """The model runner could not be reached, or is not ready; nothing was scored."""


class RunnerBusyError(Exception):
    """The model runner is ready but did not score in time (its answer was late, or its
    batching queue shed the call): this worker or the runner is overloaded; nothing was scored."""


class RunnerClient:
    """Scores code rows on the runner; `ready()` says whether the runner answers its probe."""

    def __init__(self, call: Call, ready: Callable[[], Awaitable[bool]]) -> None:
        self._call = call
        self._ready = ready

    @classmethod
    def for_dependency(cls, dependency: Any) -> RunnerClient:
        """The client for a `bentoml.depends(...)` runner: over the hop when it runs in its own
        process (BentoML resolved its address), else the in-process instance."""
        resolved = dependency.get()
        if not dependency.url:
            return cls(resolved.score, _always_ready)

        async def ready() -> bool:
            return bool(await resolved.is_ready(timeout=RUNNER_READY_PROBE_S))

        return cls(RowsClient(dependency.url, SCORE_PATH).score, ready)

    async def score(self, codes: FloatArray) -> FloatArray:
        """The runner's rows for `codes`, in order; a 503-worthy error past the deadline."""
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
                return await self._call(codes)
            except RETRIED as exc:
                failure = exc
                await asyncio.sleep(RUNNER_RETRY_BACKOFF_S * attempt)
            except RunnerShedError as exc:  # up, but its queue could not meet the bound
                raise RunnerBusyError from exc
        raise RunnerUnavailableError from failure

    async def _runner_ready(self) -> bool:
        """Whether the runner answers its readiness probe now (BentoML's /readyz)."""
        try:
            async with asyncio.timeout(RUNNER_READY_PROBE_S):
                return await self._ready()
        except Exception:  # any failure to answer is "not ready"
            return False


async def _always_ready() -> bool:
    return True
