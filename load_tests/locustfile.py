"""Locust users for the credit-risk service: realistic applicants, batches, and bad input; every
answer checked, not just its status (docs/performance.md, "Load tests").

    locust -f load_tests/locustfile.py --host http://127.0.0.1:3000      # web UI
    make load-test                                                     # headless, bounded

Environment: LOCUST_BATCH_SIZE (applicants per /classify_batch request, default 50).
"""

from __future__ import annotations

import os
import random
from typing import Any, Final

import gevent
from locust import FastHttpUser, between, task
from pydantic import TypeAdapter, ValidationError

from credit_risk.schema import Decision
from load_tests.applicants import bad_requests, refusal_problem, training_applicants

BATCH_SIZE: Final = int(os.environ.get("LOCUST_BATCH_SIZE", "50"))
"""Applicants per batch request; 50 is a typical overnight re-scoring chunk, not a limit."""

_DECISIONS: Final = TypeAdapter(list[Decision])
_APPLICANTS: Final = training_applicants()
_BAD: Final = bad_requests()
JSON: Final = {"Content-Type": "application/json"}

# Loading the data above blocks for a second or more before gevent's loop runs; libev caches the
# loop's clock, so Locust's --run-time timer would start from the stale time and fire at once
# (a 5 s smoke run ended after 60 ms with 8 requests). Refresh the cached clock.
gevent.get_hub().loop.update_now()


class LoanOfficer(FastHttpUser):
    """Scores applicants one at a time, sometimes a batch, sometimes makes a mistake."""

    wait_time = between(0, 0.01)

    def post(self, path: str, body: Any, count: int | None) -> None:
        """One request whose answer must be 200 with a Decision (or `count` of them)."""
        with self.client.post(path, json=body, name=path, catch_response=True) as resp:
            try:
                if resp.status_code != 200:
                    resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
                elif count is None:
                    Decision.model_validate_json(resp.content or b"")
                elif (n := len(_DECISIONS.validate_json(resp.content or b""))) != count:
                    resp.failure(f"{n} answers for {count} applicants")
            except ValidationError as exc:
                resp.failure(f"not a Decision: {exc.errors()[0]}")

    @task(20)
    def classify(self) -> None:
        """One applicant, as the loan officer's form sends it."""
        self.post("/classify", random.choice(_APPLICANTS), None)

    @task(2)
    def classify_batch(self) -> None:
        """A batch, as a portfolio re-scoring job sends it; answers must come back in order."""
        self.post("/classify_batch", random.choices(_APPLICANTS, k=BATCH_SIZE), BATCH_SIZE)

    @task(1)
    def bad_input(self) -> None:
        """A malformed request: must be refused with a clear 4xx, never a 5xx or a hang."""
        bad = random.choice(_BAD)
        sent = {"data": bad.body, "headers": JSON, "name": f"bad input: {bad.name}"}
        with self.client.post(bad.path, catch_response=True, **sent) as r:
            if problem := refusal_problem(bad, r.status_code or 0, r.content or b""):
                r.failure(problem)
            else:
                r.success()
