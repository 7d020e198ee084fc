"""No answer without a record: the API worker's group-commit writer.

`DecisionRecorder.record(records)` resolves only once the records are committed. Everything
submitted while the event loop runs one turn (and while a commit is under way) goes into the
next single transaction, run in one worker thread per process, so a loaded worker pays one
commit (one disk sync for SQLite) per turn, not per request. When a commit fails, every caller
in it gets `StoreUnavailableError` with a short cause and nothing of theirs is stored; the
recorder is then unhealthy (readiness fails) until a write succeeds again. Each failed write is
counted by cause, and each incident is logged once, with one more line when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from credit_risk.decision_store.chain import ChainWriter
from credit_risk.decision_store.errors import StoreUnavailableError, cause_of
from credit_risk.decision_store.location import describe_url
from credit_risk.decision_store.records import DecisionRecord
from credit_risk.decision_store.store import DecisionStore

logger = logging.getLogger(__name__)

FRESH_S: Final = 2.0
"""Readiness trusts a successful write this recent; past it (or after a failure) it writes."""

Pending = tuple[Sequence[DecisionRecord], "asyncio.Future[None]"]


class DecisionRecorder:
    """One process's writer into the decision store, shared by all its requests."""

    def __init__(
        self,
        store: DecisionStore,
        writer_id: str,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.writer_id = writer_id
        self._chain = ChainWriter(store, writer_id)
        self._on_failure = on_failure or (lambda _cause: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision-store")
        self._pending: list[Pending] = []
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._last_ok = float("-inf")
        self._failures = 0
        self.healthy = True
        """False from a failed write until one succeeds again."""
        self.cause: str | None = None
        """The cause of the last failure, while unhealthy."""

    async def record(self, records: Sequence[DecisionRecord]) -> None:
        """Resolve once `records` are committed; `StoreUnavailableError` if they were not."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((records, done))
        if not self._draining:
            self._draining = True
            loop.call_soon(self._start_drain, loop)  # after this turn: its records go together
        await done

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        self._drain_task = loop.create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                records = [r for rs, _ in batch for r in rs]
                try:
                    await loop.run_in_executor(self._executor, self._chain.append, records)
                except Exception as exc:  # any failure means: not stored, say why
                    error = self._failed(exc)
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                else:
                    self._succeeded()
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._draining = False

    async def ready(self) -> bool:
        """Whether the store takes writes: a recent success, else a write of nothing new."""
        if self.healthy and time.monotonic() - self._last_ok < FRESH_S:
            return True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._chain.touch)
        except Exception as exc:  # the probe failed for the same reasons a write would
            self._failed(exc)
            return False
        self._succeeded()
        return True

    def _failed(self, exc: BaseException) -> StoreUnavailableError:
        cause = cause_of(exc)
        self._on_failure(cause)
        self._failures += 1
        if self.healthy:
            logger.error(
                "decision store %s refuses writes (%s: %s): answering 503 until a write "
                "succeeds again",
                describe_url(self.store.url),
                cause,
                exc,
            )
        self.healthy, self.cause = False, cause
        return StoreUnavailableError(cause, type(exc).__name__)

    def _succeeded(self) -> None:
        self._last_ok = time.monotonic()
        if not self.healthy:
            logger.warning(
                "decision store %s takes writes again after %d failed write(s) (%s)",
                describe_url(self.store.url),
                self._failures,
                self.cause,
            )
        self.healthy, self.cause, self._failures = True, None, 0
