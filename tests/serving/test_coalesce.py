"""Concurrent submissions share one batch, each caller gets exactly its own results back."""

import asyncio
from collections.abc import Sequence

import pytest

from credit_risk.serving.coalesce import Coalescer


class Recorder:
    """A real async batch function that doubles its items and records batch sizes."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def __call__(self, items: list[float]) -> list[float]:
        self.calls.append(len(items))
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("runner went away")
        return [x * 2 for x in items]


def test_same_turn_submissions_are_one_batch() -> None:
    async def run() -> list[int]:
        rec = Recorder()
        co: Coalescer[float, float] = Coalescer(rec, max_items=1000)
        inputs = [[float(i)] * (i % 3 + 1) for i in range(50)]
        outs = await asyncio.gather(*(co.submit(x) for x in inputs))
        for x, out in zip(inputs, outs, strict=True):
            assert list(out) == [v * 2 for v in x]
        return rec.calls

    assert asyncio.run(run()) == [sum(i % 3 + 1 for i in range(50))]


def test_later_submissions_form_a_new_batch() -> None:
    async def run() -> list[int]:
        rec = Recorder()
        co: Coalescer[float, float] = Coalescer(rec, max_items=1000)
        await co.submit([1.0])
        await asyncio.gather(co.submit([1.0] * 2), co.submit([1.0] * 3))
        return rec.calls

    assert asyncio.run(run()) == [1, 5]


def test_failure_reaches_every_caller() -> None:
    async def run() -> list[BaseException | Sequence[float]]:
        co: Coalescer[float, float] = Coalescer(Recorder(fail=True), max_items=1000)
        return await asyncio.gather(*(co.submit([1.0]) for _ in range(5)), return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, ConnectionError) for r in results)


def test_short_answer_is_an_error_not_a_wrong_split() -> None:
    async def short(items: list[float]) -> list[float]:
        return items[:-1]

    async def run() -> None:
        co: Coalescer[float, float] = Coalescer(short, max_items=1000)
        await asyncio.gather(co.submit([1.0, 1.0]), co.submit([1.0, 1.0]))

    with pytest.raises(RuntimeError, match="3 results for 4 items"):
        asyncio.run(run())


def test_no_batch_exceeds_the_batch_size() -> None:
    async def run() -> tuple[list[list[float]], list[Sequence[float]], list[int]]:
        rec = Recorder()
        co: Coalescer[float, float] = Coalescer(rec, max_items=10)
        inputs = [[float(i)] * 4 for i in range(7)]  # 28 items in one turn
        outs = await asyncio.gather(*(co.submit(x) for x in inputs))
        return inputs, list(outs), rec.calls

    inputs, outs, calls = asyncio.run(run())
    assert calls == [8, 8, 8, 4]  # whole submissions, never more than 10 items per batch
    for x, out in zip(inputs, outs, strict=True):
        assert list(out) == [v * 2 for v in x]


def test_a_submission_larger_than_a_batch_is_refused() -> None:
    async def run() -> None:
        await Coalescer(Recorder(), max_items=10).submit([1.0] * 11)

    with pytest.raises(ValueError, match="11 items in one call; a batch takes at most 10"):
        asyncio.run(run())


def test_with_batches_under_way_what_arrives_waits_and_goes_as_one() -> None:
    async def run() -> list[int]:
        release = asyncio.Event()
        sizes: list[int] = []

        async def slow(items: list[float]) -> list[float]:
            sizes.append(len(items))
            await release.wait()
            return items

        co: Coalescer[float, float] = Coalescer(slow, max_items=1000, in_flight=1)
        first = asyncio.ensure_future(co.submit([1.0]))
        while not sizes:  # the first batch is under way
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(co.submit([2.0])) for _ in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert sizes == [1], "nothing more starts while the one batch allowed is under way"
        release.set()
        await asyncio.gather(first, *later)
        return sizes

    assert asyncio.run(run()) == [1, 5]
