"""The API worker's call to the model runner: retried, and bounded by a deadline.

Scoring is pure, so a call whose connection dropped is simply sent again; a runner that stays
unreachable past the deadline is a clear 503 for the caller (`RunnerUnavailableError`), never a
500 or a long hold. Rows travel as raw float64 bytes (workarounds/runner_hop.py); a runner
resolved in-process (tests, scripts) is called directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from credit_risk.arrays import FloatArray
from credit_risk.serving.tuning import (
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_S,
    RUNNER_RETRY_BACKOFF_S,
)
from credit_risk.serving.workarounds.runner_hop import SCORE_PATH, RowsClient

RETRIED = (
    aiohttp.ClientConnectionError,  # dropped or refused connection
    aiohttp.ClientPayloadError,  # runner died mid-answer
    ConnectionError,
)
"""Failures of the hop itself, after which the same call is sent again."""


class RunnerUnavailableError(Exception):
    """The model runner could not be reached within the deadline; nothing was scored."""


class RunnerClient:
    """Scores code rows on the runner."""

    def __init__(self, call: Callable[[FloatArray], Awaitable[FloatArray]]) -> None:
        self._call = call

    @classmethod
    def for_dependency(cls, dependency: Any) -> RunnerClient:
        """The client for a `bentoml.depends(...)` runner: over the hop when it runs in its own
        process (BentoML resolved its address), else the in-process instance."""
        resolved = dependency.get()
        if dependency.url:
            return cls(RowsClient(dependency.url, SCORE_PATH).score)
        return cls(resolved.score)

    async def score(self, codes: FloatArray) -> FloatArray:
        """The runner's rows for `codes`, in order; `RunnerUnavailableError` past the deadline."""
        failure: Exception | None = None
        try:
            async with asyncio.timeout(RUNNER_DEADLINE_S):
                for attempt in range(RUNNER_CALL_ATTEMPTS):
                    try:
                        return await self._call(codes)
                    except RETRIED as exc:
                        failure = exc
                        await asyncio.sleep(RUNNER_RETRY_BACKOFF_S * attempt)
        except TimeoutError as exc:
            failure = exc
        raise RunnerUnavailableError from failure
