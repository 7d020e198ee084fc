"""The API worker's call to the model runner: coalesced, retried, and bounded by a deadline.

Scoring is pure, so a call whose connection dropped is simply sent again; a runner that stays
unreachable past the deadline is a clear 503 for the caller (`RunnerUnavailableError`), never a
500 or a long hold. Calls from one event-loop turn travel together (serving/coalesce.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from credit_risk.arrays import FloatArray
from credit_risk.serving.coalesce import Coalescer
from credit_risk.serving.tuning import (
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_S,
    RUNNER_MAX_BATCH_SIZE,
    RUNNER_RETRY_BACKOFF_S,
)

RETRIED = (
    aiohttp.ClientConnectionError,  # dropped or refused connection
    aiohttp.ClientPayloadError,  # runner died mid-answer
    ConnectionError,
)
"""Failures of the hop itself, after which the same call is sent again."""


class RunnerUnavailableError(Exception):
    """The model runner could not be reached within the deadline; nothing was scored."""


class RunnerClient:
    """Scores code rows on the runner (BentoML's dependency proxy), one call per loop turn."""

    def __init__(self, runner: Any, *, coalesce: bool) -> None:
        self._runner = runner
        coalescer = Coalescer(self._call, max_rows=RUNNER_MAX_BATCH_SIZE)
        self.score = coalescer.submit if coalesce else self._call
        """`await score(codes)`: the runner's rows for `codes`, in order."""

    async def _call(self, codes: FloatArray) -> FloatArray:
        failure: Exception | None = None
        try:
            async with asyncio.timeout(RUNNER_DEADLINE_S):
                for attempt in range(RUNNER_CALL_ATTEMPTS):
                    try:
                        # looked up per call: the remote client learns its endpoints once connected
                        result: FloatArray = await self._runner.to_async.score(codes)
                        return result
                    except RETRIED as exc:
                        failure = exc
                        await asyncio.sleep(RUNNER_RETRY_BACKOFF_S * attempt)
        except TimeoutError as exc:
            failure = exc
        raise RunnerUnavailableError from failure
