"""One batch decided at a time in a worker, after the requests already waiting.

A batch is decided in synchronous stretches of milliseconds: its validation, its encoding, the
building of its answer. Clients posting batches back to back, valid or not, kept several in a
worker at once, and every single request waited behind the stretches of all of them. Through
the lane a worker decides one batch at a time, and each batch first lets what is already ready
run, so a single request waits behind at most one stretch; the other batches' bodies wait too,
already read and inside the 32 MiB body budget. Measured in docs/reliability.md.
"""

from __future__ import annotations

import asyncio


class BatchLane:
    """An async context manager that one holder enters at a time, in the order they asked,
    each only after the callbacks ready when its turn came."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        """Wait for the lane, then for what was ready before this holder's turn."""
        await self._lock.acquire()
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled while yielding: the lane must not stay taken
            self._lock.release()
            raise

    async def __aexit__(self, *_exc_info: object) -> None:
        """Hand the lane to the next holder."""
        self._lock.release()
