"""SIGTERM drains: requests in flight when `bentoml serve` is told to stop are answered and
recorded before it exits (a real server). Run with `-s` for the figures."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from credit_risk.decision_store import STORE_ENV, open_store
from credit_risk.policy import MAX_BATCH_APPLICANTS
from credit_risk.schema import example_applicant
from credit_risk.serving.tuning import RUNNER_SHUTDOWN_WAIT_S
from tests.conftest import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IN_FLIGHT = 32
BATCH = [example_applicant()] * MAX_BATCH_APPLICANTS
"""A slow request: a full batch takes the API worker ~0.2 s of CPU, so 32 queue for seconds."""
WAIT_S = 60.0


def _in_progress(url: str) -> float:
    """Requests inside BentoML's stack now (bodies read, admitted), across the API workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("credit_risk_http_requests_in_progress{")
        and 'route="/classify_batch"' in line
    )


def test_sigterm_lets_every_request_in_flight_finish_and_be_recorded(
    model_tag: str, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    server = start_server(
        "service:CreditRiskService",
        tmp_path / "server.log",
        env={"CREDIT_RISK_MODEL": model_tag, STORE_ENV: store},
    )
    try:

        async def scenario() -> tuple[list[httpx.Response | BaseException], float, float, int]:
            limits = httpx.Limits(max_connections=IN_FLIGHT)
            async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S, limits=limits) as c:
                calls = [asyncio.create_task(c.post("/classify_batch", json=BATCH))]
                calls += [
                    asyncio.create_task(c.post("/classify_batch", json=BATCH))
                    for _ in range(IN_FLIGHT - 1)
                ]
                deadline = time.monotonic() + WAIT_S
                seen = done = 0.0
                while time.monotonic() < deadline:  # every request has reached the app
                    seen = await asyncio.to_thread(_in_progress, server.url)
                    done = sum(call.done() for call in calls)
                    if seen + done >= IN_FLIGHT:
                        break
                    await asyncio.sleep(0.05)
                assert seen > 0, "no request in flight at the signal: it would prove nothing"
                os.kill(server.process.pid, signal.SIGTERM)
                stopped = time.monotonic()
                results = await asyncio.gather(*calls, return_exceptions=True)
                exited = await asyncio.to_thread(server.process.wait, WAIT_S)
                assert exited == 0, server.log()[-3000:]
                return results, seen, time.monotonic() - stopped, int(done)

        results, seen, took, done_before = asyncio.run(scenario())
    finally:
        stop_server(server)
    outcomes = Counter(
        r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in results
    )
    answered = [
        d["decision_id"]
        for r in results
        if isinstance(r, httpx.Response) and r.status_code == 200
        for d in r.json()
    ]
    decisions = open_store(store)
    records = {r.decision_id for r in decisions.records()}
    decisions.close()
    print(
        f"\nSIGTERM with {seen:.0f} of {IN_FLIGHT} batch requests inside BentoML's stack "
        f"({done_before} answered before): "
        f"{dict(outcomes)}; {len(answered)} decisions answered, {len(records)} recorded; "
        f"the server exited {took:.1f} s after the signal"
    )

    assert outcomes == {200: IN_FLIGHT}, outcomes
    assert set(answered) <= records, "every answered decision is recorded"
    assert took < RUNNER_SHUTDOWN_WAIT_S + 10
