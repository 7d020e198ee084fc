"""The asyncio client against a real `bentoml serve`: concurrent calls, refusals, and a 503
retried with the event loop free meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from credit_risk.client import (
    AsyncCreditRiskClient,
    AuthError,
    InvalidApplicantError,
    RetryEvent,
    ServiceUnavailableError,
)
from credit_risk.schema import Applicant, Decisions, example_applicant
from tests.client.conftest import TOKEN, runner_suspended
from tests.conftest import Server

pytestmark = pytest.mark.integration

EXAMPLE = Applicant.model_validate(example_applicant())


def test_concurrent_calls_share_one_client(server: Server, model_tag: str) -> None:
    async def scenario() -> tuple[list[str], Decisions, str]:
        async with AsyncCreditRiskClient(server.url) as client:
            singles = await asyncio.gather(
                *(client.classify(EXAMPLE) for _ in range(10)),
                client.classify(example_applicant()),
                client.classify(**example_applicant()),
            )
            batch = await client.classify_batch([EXAMPLE, example_applicant()])
            card = await client.model_card()
            assert await client.ready()
        return [d.decision_id for d in singles], batch, card.tag

    ids, batch, tag = asyncio.run(scenario())
    assert len(set(ids)) == 12
    assert [d.decision for d in batch.root] == ["decline", "decline"]
    assert batch.root[0].probability_of_default == batch.root[1].probability_of_default
    assert tag == model_tag


def test_refusals_are_raised_as_the_sync_client_raises_them(
    server: Server, guarded: Server
) -> None:
    async def scenario() -> tuple[InvalidApplicantError, AuthError]:
        async with AsyncCreditRiskClient(server.url) as client:
            try:
                await client.classify({**example_applicant(), "age_years": 12})
            except InvalidApplicantError as exc:
                invalid = exc
        async with AsyncCreditRiskClient(guarded.url, token="wrong") as client:
            try:
                await client.model_card()
            except AuthError as exc:
                denied = exc
        return invalid, denied

    invalid, denied = asyncio.run(scenario())
    assert invalid.fields == ("age_years",)
    assert denied.status == 401


def test_a_503_is_retried_while_the_loop_runs_other_work(guarded: Server) -> None:
    events: list[RetryEvent] = []
    ticks = 0
    ticks_at_retry: list[int] = []

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.05)

    async def scenario(resume: Callable[[], None]) -> tuple[str, int]:
        def on_retry(event: RetryEvent) -> None:
            events.append(event)
            ticks_at_retry.append(ticks)
            resume()

        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        async with AsyncCreditRiskClient(guarded.url, token=TOKEN, on_retry=on_retry) as client:
            decision = await client.classify(EXAMPLE)
        answered_at = ticks
        stop.set()
        await ticking
        return decision.decision, answered_at

    with runner_suspended(guarded) as resume:
        decision, answered_at = asyncio.run(scenario(resume))
    assert decision == "decline"
    assert isinstance(events[0].error, ServiceUnavailableError)
    assert events[0].delay_s >= (events[0].retry_after_s or 0) > 0
    # the wait before the retry (Retry-After: 1 s) left the loop free for other tasks
    assert answered_at - ticks_at_retry[0] >= 3
