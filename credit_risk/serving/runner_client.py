"""The API worker's call to the model runner: retried, and bounded by a deadline.

Scoring is pure, so a call whose connection dropped is simply sent again; a runner that stays
unreachable past the deadline is a clear 503 for the caller (`RunnerUnavailableError`), never a
500 or a long hold.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from credit_risk.arrays import FloatArray
from credit_risk.serving.tuning import (
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_S,
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
    """Scores code rows on the runner, through BentoML's dependency proxy."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    async def score(self, codes: FloatArray) -> FloatArray:
        """The runner's rows for `codes`, in order; `RunnerUnavailableError` past the deadline."""
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
