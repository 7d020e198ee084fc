"""Coalesce the work that requests bring into batches: one per event-loop turn, or, while
batches are already under way, one per batch that finishes.

Each API -> runner call is a full internal HTTP request, and deciding, recording (a commit) and
counting cost a fixed amount per batch on top of the per-row work. Under load many requests reach
that point in the same turn of an API worker's event loop: handing their applicants over as one
batch turns N calls into one, and the runner's adaptive batching then merges the batches of
different API workers. With `in_flight` batches under way, what arrives meanwhile waits for one
of them to finish and then goes as one batch, so batches grow with the load instead of the
number of batches (measured: ~4 requests per batch at 64 connections without the bound, ~10 to
30 with it). Alone, a request waits for nothing: the batch runs on the next turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Pending = tuple[Sequence[T], "asyncio.Future[Sequence[R]]"]


class Coalescer(Generic[T, R]):
    """Gathers the items submitted during one event-loop turn and hands them to `call` in as
    few batches as `max_items` allows; `call` returns one result per item, in order."""

    def __init__(
        self,
        call: Callable[[list[T]], Awaitable[Sequence[R]]],
        max_items: int,
        in_flight: int | None = None,
    ) -> None:
        self._call = call
        self._max_items = max_items
        self._in_flight = in_flight
        self._pending: list[Pending[T, R]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, items: Sequence[T]) -> Sequence[R]:
        """Process `items` as part of the next combined batch; returns this caller's results."""
        if len(items) > self._max_items:
            msg = f"{len(items)} items in one call; a batch takes at most {self._max_items}"
            raise ValueError(msg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sequence[R]] = loop.create_future()
        self._pending.append((items, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight is not None and len(self._tasks) >= self._in_flight:
            return  # a batch under way will flush what is pending when it finishes
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for batch in self._split(pending):
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _split(self, pending: list[Pending[T, R]]) -> list[list[Pending[T, R]]]:
        """Consecutive groups of whole submissions, each within the batch size."""
        batches: list[list[Pending[T, R]]] = [[]]
        size = 0
        for item in pending:
            if size + len(item[0]) > self._max_items:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += len(item[0])
        return batches

    async def _run(self, batch: list[Pending[T, R]]) -> None:
        live = [(items, fut) for items, fut in batch if not fut.cancelled()]
        if not live:
            return
        sizes = [len(items) for items, _ in live]
        try:
            out = await self._call([x for items, _ in live for x in items])
            if len(out) != sum(sizes):
                msg = f"{len(out)} results for {sum(sizes)} items"
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
