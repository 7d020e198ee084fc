"""Locust users for the credit-risk service: realistic applicants, batches, and bad input.

    locust -f load_tests/locustfile.py --host http://127.0.0.1:3000      # web UI
    make load-test                                                     # headless, bounded

Every answer is checked, not just its status: a 200 whose body is not a valid `Decision` (or
a batch with the wrong number of answers) is a failure, and so is bad input that is not refused
with the documented 4xx naming the field. Locust spends ~0.5 ms of CPU per request, so on a
small machine it measures behaviour under load; the headline throughput comes from
`make bench` (wrk).

Locust exits non-zero when any request failed (its --exit-code-on-error, default 1).
Environment: LOCUST_BATCH_SIZE (applicants per /classify_batch request, default 50).
"""

from __future__ import annotations

import os
import random
from typing import Final

import gevent
from locust import FastHttpUser, between, task
from pydantic import TypeAdapter, ValidationError

from credit_risk.schema import Decision
from load_tests.applicants import bad_requests, refusal_problem, training_applicants

BATCH_SIZE: Final = int(os.environ.get("LOCUST_BATCH_SIZE", "50"))
"""Applicants per batch request; 50 is a typical overnight re-scoring chunk, not a limit."""

JSON_HEADERS: Final = {"Content-Type": "application/json"}
_DECISIONS: Final = TypeAdapter(list[Decision])
_APPLICANTS: Final = training_applicants()
_BAD: Final = bad_requests()

# Loading the data above blocks for a second or more before gevent's loop runs; libev caches the
# loop's clock, so Locust's --run-time timer would start from the stale time and fire at once
# (a 5 s smoke run ended after 60 ms with 8 requests). Refresh the cached clock.
gevent.get_hub().loop.update_now()


def _problem_with_decision(body: bytes) -> str | None:
    try:
        Decision.model_validate_json(body)
    except ValidationError as exc:
        return f"not a Decision: {exc.errors()[0]}"
    return None


class LoanOfficer(FastHttpUser):
    """Scores applicants one at a time, sometimes a batch, sometimes makes a mistake."""

    wait_time = between(0, 0.01)

    @task(20)
    def classify(self) -> None:
        """One applicant, as the loan officer's form sends it."""
        applicant = random.choice(_APPLICANTS)
        with self.client.post(
            "/classify", json=applicant, name="/classify", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
            elif (problem := _problem_with_decision(resp.content or b"")) is not None:
                resp.failure(problem)

    @task(2)
    def classify_batch(self) -> None:
        """A batch, as a portfolio re-scoring job sends it; answers must come back in order."""
        applicants = random.choices(_APPLICANTS, k=BATCH_SIZE)
        with self.client.post(
            "/classify_batch", json=applicants, name="/classify_batch", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
                return
            try:
                decisions = _DECISIONS.validate_json(resp.content or b"")
            except ValidationError as exc:
                resp.failure(f"not a list of Decisions: {exc.errors()[0]}")
                return
            if len(decisions) != len(applicants):
                resp.failure(f"{len(decisions)} answers for {len(applicants)} applicants")

    @task(1)
    def bad_input(self) -> None:
        """A malformed request: must be refused with a clear 4xx, never a 5xx or a hang."""
        bad = random.choice(_BAD)
        with self.client.post(
            bad.path,
            data=bad.body,
            headers=JSON_HEADERS,
            name=f"bad input: {bad.name}",
            catch_response=True,
        ) as resp:
            problem = refusal_problem(bad, resp.status_code or 0, resp.content or b"")
            if problem is None:
                resp.success()
            else:
                resp.failure(problem)
