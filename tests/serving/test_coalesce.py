"""Concurrent submissions share one call, each caller gets exactly its own rows back."""

import asyncio

import numpy as np
import pytest

from credit_risk.serving.coalesce import Coalescer


class Recorder:
    """A real async scoring function that doubles its input and records call sizes."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("runner went away")
        return rows * 2


def test_same_turn_submissions_are_one_call() -> None:
    async def run() -> tuple[list[np.ndarray], list[int]]:
        rec = Recorder()
        co = Coalescer(rec, max_rows=1000)
        inputs = [np.full((i % 3 + 1, 2), float(i)) for i in range(50)]
        outs = await asyncio.gather(*(co.submit(x) for x in inputs))
        for x, out in zip(inputs, outs, strict=True):
            np.testing.assert_array_equal(out, x * 2)
        return outs, rec.calls

    _, calls = asyncio.run(run())
    assert calls == [sum(i % 3 + 1 for i in range(50))]


def test_later_submissions_form_a_new_call() -> None:
    async def run() -> list[int]:
        rec = Recorder()
        co = Coalescer(rec, max_rows=1000)
        await co.submit(np.ones((1, 2)))
        await asyncio.gather(co.submit(np.ones((2, 2))), co.submit(np.ones((3, 2))))
        return rec.calls

    assert asyncio.run(run()) == [1, 5]


def test_failure_reaches_every_caller() -> None:
    async def run() -> list[BaseException | np.ndarray]:
        co = Coalescer(Recorder(fail=True), max_rows=1000)
        return await asyncio.gather(
            *(co.submit(np.ones((1, 2))) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(run())
    assert all(isinstance(r, ConnectionError) for r in results)


def test_short_answer_is_an_error_not_a_wrong_split() -> None:
    async def short(rows: np.ndarray) -> np.ndarray:
        return rows[:-1]

    async def run() -> None:
        co = Coalescer(short, max_rows=1000)
        await asyncio.gather(co.submit(np.ones((2, 2))), co.submit(np.ones((2, 2))))

    with pytest.raises(RuntimeError, match="3 rows for 4"):
        asyncio.run(run())


def test_no_call_exceeds_the_runners_batch_size() -> None:
    async def run() -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        rec = Recorder()
        co = Coalescer(rec, max_rows=10)
        inputs = [np.full((4, 2), float(i)) for i in range(7)]  # 28 rows in one turn
        outs = await asyncio.gather(*(co.submit(x) for x in inputs))
        return inputs, list(outs), rec.calls

    inputs, outs, calls = asyncio.run(run())
    assert calls == [8, 8, 8, 4]  # whole submissions, never more than 10 rows per call
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out, x * 2)


def test_a_submission_larger_than_the_runner_takes_is_refused() -> None:
    async def run() -> None:
        await Coalescer(Recorder(), max_rows=10).submit(np.ones((11, 2)))

    with pytest.raises(ValueError, match="11 rows in one call; the runner takes at most 10"):
        asyncio.run(run())
