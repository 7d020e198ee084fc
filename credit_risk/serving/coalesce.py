"""Coalesce concurrent runner calls from one API worker into one.

Each API -> runner call is a full internal HTTP request (~1-3 ms of CPU on both sides). Under
load, many requests reach the runner call in the same event-loop turn; sending their rows as
one array turns N hops into one, and the runner's adaptive batching then merges the calls of
different API workers. Alone, a request waits for nothing: the flush runs on the next turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from credit_risk.arrays import FloatArray

RunnerCall = Callable[[FloatArray], Awaitable[FloatArray]]
Pending = tuple[FloatArray, "asyncio.Future[FloatArray]"]


class Coalescer:
    """Gathers the rows submitted during one event-loop turn and scores them in as few calls as
    the runner's `max_rows` (its `max_batch_size`) allows."""

    def __init__(self, call: RunnerCall, max_rows: int) -> None:
        self._call = call
        self._max_rows = max_rows
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, rows: FloatArray) -> FloatArray:
        """Score `rows` (n, k) as part of the next combined call; returns this caller's n rows."""
        if len(rows) > self._max_rows:
            msg = f"{len(rows)} rows in one call; the runner takes at most {self._max_rows}"
            raise ValueError(msg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[FloatArray] = loop.create_future()
        self._pending.append((rows, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for batch in self._split(pending):
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
            task.add_done_callback(self._tasks.discard)

    def _split(self, pending: list[Pending]) -> list[list[Pending]]:
        """Consecutive groups of whole submissions, each within the runner's batch size."""
        batches: list[list[Pending]] = [[]]
        rows = 0
        for item in pending:
            if rows + len(item[0]) > self._max_rows:
                batches.append([])
                rows = 0
            batches[-1].append(item)
            rows += len(item[0])
        return batches

    async def _run(self, batch: list[Pending]) -> None:
        live = [(rows, fut) for rows, fut in batch if not fut.cancelled()]
        if not live:
            return
        sizes = [len(rows) for rows, _ in live]
        try:
            out = await self._call(
                live[0][0] if len(live) == 1 else np.concatenate([rows for rows, _ in live])
            )
            if len(out) != sum(sizes):
                msg = f"runner returned {len(out)} rows for {sum(sizes)}"
                raise RuntimeError(msg)
        except BaseException as exc:
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for (_, fut), size in zip(live, sizes, strict=True):
            if not fut.done():
                fut.set_result(out[start : start + size])
            start += size
