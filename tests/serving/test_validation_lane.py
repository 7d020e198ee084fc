"""The validation lane: one holder at a time, in order, each after what was ready before it and
after the pause that keeps the lane within its share of the worker's CPU."""

from __future__ import annotations

import asyncio
import time

import pytest

from credit_risk.serving.validation_lane import (
    READ_CPU_S_PER_BYTE,
    LaneBusyError,
    ValidationLane,
)


def _busy(cpu_s: float) -> None:
    """Spend `cpu_s` of this thread's CPU, as a validation does."""
    until = time.thread_time() + cpu_s
    while time.thread_time() < until:
        pass


def test_holders_enter_one_at_a_time_in_the_order_they_asked() -> None:
    async def scenario() -> list[str]:
        lane, order = ValidationLane(), []

        async def batch(name: str) -> None:
            async with lane.turn(0):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)  # an await inside: another holder could run here
                order.append(f"{name} out")

        await asyncio.gather(batch("a"), batch("b"), batch("c"))
        return order

    assert asyncio.run(scenario()) == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_a_holder_lets_what_was_ready_before_it_run_first() -> None:
    async def scenario() -> list[str]:
        lane, order = ValidationLane(), []

        async def batch() -> None:
            async with lane.turn(0):
                order.append("batch")

        async def single() -> None:
            order.append("single")

        first = asyncio.create_task(batch())  # ready first, but yields on entering the lane
        await asyncio.gather(first, asyncio.create_task(single()))
        return order

    assert asyncio.run(scenario()) == ["single", "batch"]


def test_a_holder_cancelled_on_entering_frees_the_lane() -> None:
    async def scenario() -> bool:
        lane = ValidationLane()

        async def holder() -> None:
            async with lane.turn(0):
                pass

        entering = asyncio.create_task(holder())
        await asyncio.sleep(0)  # it holds the lock and is yielding
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering
        async with lane.turn(0):
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), 5))


def test_the_next_holder_waits_out_the_lane_s_share_of_the_cpu() -> None:
    # At a share of 1/4, a holder charged c makes the next wait at least 3c after it left; the
    # charge is its CPU plus its body's estimated reading.
    body_bytes = 1_000_000

    async def scenario() -> tuple[float, float]:
        lane, clock = ValidationLane(share=0.25, max_wait_s=60), asyncio.get_running_loop().time
        times: dict[str, float] = {}

        async def batch(name: str) -> None:
            async with lane.turn(body_bytes):
                times[f"{name} in"] = clock()
                _busy(0.02)
                times[f"{name} out"] = clock()

        await asyncio.gather(batch("a"), batch("b"))
        return times["b in"] - times["a out"], 3 * (0.02 + body_bytes * READ_CPU_S_PER_BYTE)

    paused, owed = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert paused >= owed - 1e-3, "asyncio may wake a timer up to its clock resolution early"


def test_time_a_holder_spends_waiting_is_not_charged() -> None:
    # A holder that waits 0.2 s without using the CPU leaves the lane free at once after it.
    async def scenario() -> list[str]:
        lane, order = ValidationLane(share=0.05, max_wait_s=1.0), []

        async def waits(name: str) -> None:
            async with lane.turn(0):
                order.append(name)
                await asyncio.sleep(0.2 if name == "a" else 0)

        await waits("a")
        await waits("b")  # were the wait charged, the pause (19 x 0.2 s) would refuse b
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == ["a", "b"]


def test_a_holder_that_would_wait_too_long_is_turned_away_and_the_lane_stays_usable() -> None:
    async def scenario() -> bool:
        lane, held = ValidationLane(max_wait_s=0.05), asyncio.Event()

        async def holder() -> None:
            async with lane.turn(0) as turn:
                turn.refused = False  # whatever else the loop ran meanwhile is not charged
                await held.wait()

        holding = asyncio.create_task(holder())
        await asyncio.sleep(0)  # it has the lane
        with pytest.raises(LaneBusyError):
            async with lane.turn(0):
                pass
        held.set()
        await holding
        async with lane.turn(0):
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), 5))


def test_a_pause_longer_than_the_longest_wait_is_refused_without_waiting_it() -> None:
    # The share makes the pause after 10 ms of CPU about 10,000 s. Both refusals come before a
    # task that was ready runs: neither waits, and the first does not leave the lane taken.
    async def scenario() -> list[str]:
        lane, order = ValidationLane(share=1e-6, max_wait_s=1.0), []
        async with lane.turn(0):
            _busy(0.01)

        async def other() -> None:
            order.append("other")

        ready = asyncio.create_task(other())
        for _ in range(2):
            with pytest.raises(LaneBusyError):
                async with lane.turn(0):
                    pass
            order.append("refused")
        await ready
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == ["refused", "refused", "other"]


def test_a_holder_cancelled_while_queued_gives_up_its_place() -> None:
    async def scenario() -> list[str]:
        lane, held, order = ValidationLane(), asyncio.Event(), []

        async def holder(name: str) -> None:
            async with lane.turn(0) as turn:
                turn.refused = False
                order.append(name)
                if name == "a":
                    await held.wait()

        first = asyncio.create_task(holder("a"))
        queued = asyncio.create_task(holder("b"))
        await asyncio.sleep(0)  # a holds the lane, b waits for it
        queued.cancel()
        held.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await queued
        await holder("c")
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == ["a", "c"]


def test_a_holder_that_raises_frees_the_lane() -> None:
    async def scenario() -> bool:
        lane = ValidationLane()
        with pytest.raises(ValueError, match="an invalid body"):
            async with lane.turn(0):
                raise ValueError("an invalid body")
        async with lane.turn(0):
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), 5))


def test_a_turn_whose_body_was_valid_is_not_charged() -> None:
    # Charged, 10 ms of CPU would pause the next for about 10,000 s: it would be refused.
    async def scenario() -> bool:
        lane = ValidationLane(share=1e-6, max_wait_s=1.0)
        async with lane.turn(1_000_000) as turn:
            _busy(0.01)
            turn.refused = False
        async with lane.turn(0):
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), 5))
