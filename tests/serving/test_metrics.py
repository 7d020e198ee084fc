"""The request series are tallied per event-loop turn and written once, with the same totals."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from credit_risk.serving.metrics import RequestTally


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_turns_requests_are_written_once_the_turn_ends() -> None:
    tally = RequestTally()
    route = "/tally-test"
    before = _sample("credit_risk_http_requests_total", route=route, status="200")
    seen_during: list[float] = []

    async def turn() -> None:
        for _ in range(3):
            tally.in_flight(route, 1)
            tally.observe(route, 200, 0.002)
            tally.in_flight(route, -1)
        tally.in_flight(route, 1)  # one still in progress
        tally.reject("overload")
        seen_during.append(_sample("credit_risk_http_requests_total", route=route, status="200"))
        await asyncio.sleep(0)  # the turn ends: the tally is written

    asyncio.run(turn())
    assert seen_during == [before], "nothing is written while the turn runs"
    after = _sample("credit_risk_http_requests_total", route=route, status="200")
    assert after - before == 3
    assert _sample("credit_risk_http_request_duration_seconds_count", route=route) >= 3
    assert _sample("credit_risk_http_requests_in_progress", route=route) == 1


def test_without_an_event_loop_a_count_is_written_at_once() -> None:
    tally = RequestTally()
    before = _sample("credit_risk_http_requests_total", route="/tally-now", status="431")
    tally.count("/tally-now", 431)
    assert (
        _sample("credit_risk_http_requests_total", route="/tally-now", status="431") == before + 1
    )
