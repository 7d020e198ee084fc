"""Call the credit-risk service from Python: one applicant, then a batch.

    python client.py [--url http://127.0.0.1:3000] [--token TOKEN]

Copy it: `bentoml.SyncHTTPClient` builds its methods from the server's API, so the endpoint
names are the Python method names, and a JSON body is the applicant's fields.
"""

from __future__ import annotations

import argparse
import json
import os

import bentoml

from credit_risk.schema import Applicant, Decision, example_applicant


def classify_examples(url: str, token: str | None = None) -> list[Decision]:
    """Score the documented example applicant alone, then with a riskier variant as a batch."""
    applicant = Applicant.model_validate(example_applicant())
    riskier = applicant.model_copy(
        update={"checking_account": "below_0", "duration_months": 60, "savings": "below_100"}
    )
    with bentoml.SyncHTTPClient(url, token=token, server_ready_timeout=30) as client:
        single = Decision.model_validate(client.classify(applicant.model_dump()))
        batch = [
            Decision.model_validate(d)
            for d in client.classify_batch([applicant.model_dump(), riskier.model_dump()])
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
