"""A typed Python client for the credit-risk service: `Applicant` in, `Decision` out.

    from credit_risk.client import CreditRiskClient, InvalidApplicantError
    from credit_risk.schema import Applicant

    with CreditRiskClient("http://127.0.0.1:3000", token="...") as client:
        decision = client.classify(Applicant(**fields))   # or a dict, or classify(**fields)
        decisions = client.classify_batch([a, b, c])       # Decisions, in input order
        card = client.model_card()

`AsyncCreditRiskClient` offers the same calls to `await`. It installs with the runtime
(`pip install credit-risk-bento`) and imports neither BentoML nor anything of the model: httpx
and the schema's pydantic models only. Refusals are exceptions that carry the status and the
service's message; 429 and 503 are retried as the `RetryPolicy` allows (credit_risk/client/).
"""

from credit_risk.client.aio import AsyncCreditRiskClient
from credit_risk.client.errors import (
    APIError,
    AuthError,
    CreditRiskError,
    FieldError,
    InvalidApplicantError,
    NoAnswerError,
    ServiceBusyError,
    ServiceUnavailableError,
    ServiceUnreachableError,
    UnexpectedAnswerError,
)
from credit_risk.client.retry import RetryEvent, RetryPolicy
from credit_risk.client.sync import CreditRiskClient
from credit_risk.client.wire import ApplicantLike, ModelCard
from credit_risk.schema import Applicant, Decision, Decisions

__all__ = [
    "APIError",
    "Applicant",
    "ApplicantLike",
    "AsyncCreditRiskClient",
    "AuthError",
    "CreditRiskClient",
    "CreditRiskError",
    "Decision",
    "Decisions",
    "FieldError",
    "InvalidApplicantError",
    "ModelCard",
    "NoAnswerError",
    "RetryEvent",
    "RetryPolicy",
    "ServiceBusyError",
    "ServiceUnavailableError",
    "ServiceUnreachableError",
    "UnexpectedAnswerError",
]
