"""The validation lane: one holder at a time, in order, each after what was ready before it."""

from __future__ import annotations

import asyncio

import pytest

from credit_risk.serving.validation_lane import ValidationLane


def test_holders_enter_one_at_a_time_in_the_order_they_asked() -> None:
    async def scenario() -> list[str]:
        lane, order = ValidationLane(), []

        async def batch(name: str) -> None:
            async with lane:
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
            async with lane:
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
        entering = asyncio.create_task(lane.__aenter__())
        await asyncio.sleep(0)  # it holds the lock and is yielding
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering
        async with lane:
            return True

    assert asyncio.run(asyncio.wait_for(scenario(), 5))
