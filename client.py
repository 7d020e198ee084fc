"""Call the credit-risk service from Python: one applicant, then a batch.

    python client.py [--url http://127.0.0.1:3000] [--token TOKEN]

Copy it: `credit_risk.client` installs with the service's package (`pip install
credit-risk-bento`). It takes `Applicant` models (or dicts) and returns `Decision`s, retries
429 and 503 after the server's Retry-After (both are refused before anything is scored), and
raises a refusal as an exception that names the offending fields.
"""

from __future__ import annotations

import argparse
import os

from credit_risk.client import CreditRiskClient, CreditRiskError
from credit_risk.schema import Applicant, Decision, example_applicant


def classify_examples(url: str, token: str | None = None) -> list[Decision]:
    """Score the documented example applicant alone, then with a stronger one as a batch."""
    applicant = Applicant(**example_applicant())
    stronger = applicant.model_copy(
        update={"checking_account": "none", "duration_months": 12, "credit_amount": 2000.0}
    )
    with CreditRiskClient(url, token=token) as client:
        single = client.classify(applicant)
        batch = client.classify_batch([applicant, stronger])
    return [single, *batch.root]


def main() -> None:
    """Print each decision as JSON; a refusal (401, no service, ...) as one line on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CREDIT_RISK_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--token", default=os.environ.get("CREDIT_RISK_TOKEN"))
    args = parser.parse_args()
    try:
        decisions = classify_examples(args.url, args.token)
    except CreditRiskError as exc:  # e.g. AuthError: "401: missing or invalid bearer token"
        raise SystemExit(f"{args.url}: {exc}") from None
    for decision in decisions:
        print(decision.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
