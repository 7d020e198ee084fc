"""Large bodies validated one at a time in a worker, after the requests already waiting.

Validating a large body is one synchronous stretch of the event loop: a full batch takes
milliseconds, a row with tens of thousands of unknown keys tens of them. Clients posting such
bodies back to back, from several connections, had several validated in one turn of the loop,
and every single request waited behind all of them. Through the lane a worker validates one
large body at a time, and each first lets what is already ready run, so a single request waits
behind at most one. Only validation takes the lane: a batch's decision (the runner call, the
commit) runs beside the others as before. Measured in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from typing import Final

LANE_FROM_BYTES: Final = 16 * 1024
"""Bodies larger than this take the lane: one applicant is under 1 KB, a full batch ~0.45 MB."""


class ValidationLane:
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
