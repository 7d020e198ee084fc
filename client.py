"""Call the credit-risk service from Python: one applicant, then a batch.

    python client.py [--url http://127.0.0.1:3000] [--token TOKEN]

Copy it: `bentoml.SyncHTTPClient` builds its methods from the server's API, so the endpoint
names are the Python method names, and a JSON body is the applicant's fields. A busy server
answers 429 (in-flight limit) or 503 (model queue full) before scoring anything, so those are
safe to retry: `with_retry` backs off exponentially with jitter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Final, TypeVar

import bentoml
from bentoml.exceptions import BentoMLException

from credit_risk.schema import Applicant, Decision, example_applicant

T = TypeVar("T")

RETRYABLE: Final = frozenset({HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE})
"""Refused before scoring, so a retry cannot score an applicant twice (504 is not: it may have)."""


def with_retry(
    call: Callable[[], T], attempts: int = 6, base_s: float = 0.1, cap_s: float = 2.0
) -> T:
    """Run `call`, retrying 429/503 with exponential backoff and full jitter."""
    for attempt in range(attempts):
        try:
            return call()
        except BentoMLException as exc:
            if exc.error_code not in RETRYABLE or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))  # noqa: S311
    raise AssertionError("unreachable")


def classify_examples(url: str, token: str | None = None) -> list[Decision]:
    """Score the documented example applicant alone, then with a stronger one as a batch."""
    applicant = Applicant.model_validate(example_applicant())
    stronger = applicant.model_copy(
        update={"checking_account": "none", "duration_months": 12, "credit_amount": 2000.0}
    )
    with bentoml.SyncHTTPClient(url, token=token, server_ready_timeout=30) as client:
        single = Decision.model_validate(
            with_retry(lambda: client.classify(applicant.model_dump()))
        )
        pair = [applicant.model_dump(), stronger.model_dump()]
        batch = [
            Decision.model_validate(d) for d in with_retry(lambda: client.classify_batch(pair))
        ]
    return [single, *batch]


def main() -> None:
    """Print each decision as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CREDIT_RISK_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--token", default=os.environ.get("CREDIT_RISK_TOKEN"))
    args = parser.parse_args()
    for decision in classify_examples(args.url, args.token):
        print(json.dumps(decision.model_dump(), indent=2))


if __name__ == "__main__":
    main()
