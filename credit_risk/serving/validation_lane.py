"""Large bodies validated one at a time in a worker, after the requests already waiting, and
within a bounded share of the worker's CPU.

Validating a large body is one synchronous stretch of the event loop: a full batch takes
milliseconds, a row with tens of thousands of unknown keys tens of them. Clients posting such
bodies back to back, from several connections, had several validated in one turn of the loop,
and every single request waited behind all of them. Through the lane a worker validates one
large body at a time, and each first lets what is already ready run, so a single request waits
behind at most one.

One at a time was not enough: a client posting invalid batches gets each answer within
milliseconds and sends the next at once, so four such connections still kept both workers
mostly busy reading, validating and refusing them. The lane therefore paces what it refuses: a
holder whose body was invalid is charged the CPU its validation took plus an estimate of reading
and answering its body, and the next holder starts no sooner than `charge * (1 / share - 1)`
later. Refused large bodies so get at most about `share` of the worker's CPU, and since a client
waits for its answer before sending its next body, so does each client sending them. A valid
body is not charged: its decision is paced by the runner, the in-flight limit and the deadline,
and pacing valid batches too cost `make bench` batches a second. The charge is CPU, not elapsed
time, which on a host whose cores the runner also uses counts the runner's turns too. A holder
that would wait longer than `max_wait_s` gets `LaneBusyError` (answered 429). Only validation
takes the lane: a batch's decision (the runner call, the commit) runs beside the others as
before. Measured in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from credit_risk.serving.tuning import LANE_MAX_WAIT_S, LANE_SHARE

READ_CPU_S_PER_BYTE: Final = 3e-3 / 1e6
"""CPU a worker spends on a large body besides validating it (the HTTP parser, reading it,
sending the answer), about 3 ms per MB: one client posting full batches with every field wrong
costs the server 1.7-2.7 ms per batch of 0.45 MB (tests/service/test_edge_limits.py), of which
validating it in one process is 0.8 ms (CHANGELOG.md, Reliability)."""


class LaneBusyError(Exception):
    """The lane did not come free within the longest wait: the worker is validating others."""


@dataclass
class LaneTurn:
    """One holder's turn: `refused` says whether its body was refused, and so is charged."""

    refused: bool = True


class ValidationLane:
    """One holder at a time, in the order they asked, each only after the callbacks ready when
    its turn came and after the pause that keeps the lane within its share of the CPU."""

    def __init__(self, share: float = LANE_SHARE, max_wait_s: float = LANE_MAX_WAIT_S) -> None:
        self._lock = asyncio.Lock()
        self._rest_per_charge = 1 / share - 1
        self._max_wait_s = max_wait_s
        self._free_at = 0.0  # loop time from which the next holder may start

    @asynccontextmanager
    async def turn(self, body_bytes: int) -> AsyncIterator[LaneTurn]:
        """Hold the lane to validate a body, without awaiting (the thread's CPU is charged);
        LaneBusyError, lane untaken, when the turn would come after `max_wait_s`."""
        loop = asyncio.get_running_loop()
        await self._enter(loop)
        turn, started = LaneTurn(), time.thread_time()
        try:
            yield turn
        finally:
            if turn.refused:
                charge = time.thread_time() - started + body_bytes * READ_CPU_S_PER_BYTE
                self._free_at = loop.time() + charge * self._rest_per_charge
            self._lock.release()

    async def _enter(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + self._max_wait_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()  # a cancelled acquire never holds the lock
        except TimeoutError:
            raise LaneBusyError from None
        try:
            if self._free_at > deadline:
                raise LaneBusyError
            await asyncio.sleep(max(self._free_at - loop.time(), 0))  # also lets the ready run
        except BaseException:  # busy, or cancelled while waiting: the lane must not stay taken
            self._lock.release()
            raise
