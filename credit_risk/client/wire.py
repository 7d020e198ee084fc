"""The service's HTTP contract as the client speaks it: paths, bodies, answers, headers.

Applicants go out as the service takes them: an `Applicant` as its JSON fields, a mapping as
given. A mapping is not validated here: the service decides what is valid and names every
offending field in its 400 (`InvalidApplicantError.fields`), so a client never refuses what a
newer server would take. Answers come back as the schema's `Decision` and `Decisions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from credit_risk import __version__
from credit_risk.client.errors import (
    CreditRiskError,
    NoAnswerError,
    ServiceUnreachableError,
    UnexpectedAnswerError,
    error_from_response,
)
from credit_risk.schema import Applicant

CLASSIFY: Final = "/classify"
CLASSIFY_BATCH: Final = "/classify_batch"
MODEL_CARD: Final = "/model_card"
READY: Final = "/readyz"

DEFAULT_URL: Final = "http://127.0.0.1:3000"
USER_AGENT: Final = f"credit-risk-client/{__version__}"

ApplicantLike = Applicant | Mapping[str, Any]
"""An applicant as a caller holds it: the schema's model, or a mapping of its JSON fields."""

Answer = TypeVar("Answer", bound=BaseModel)


class ModelCard(BaseModel):
    """What the service serves (`POST /model_card`): the champion, and any challenger scored
    in shadow; the training metadata (threshold, metrics, features, ...) stays as extra keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    tag: str
    created_at: datetime
    labels: dict[str, str]
    threshold: float
    served_from: str | None = None
    challenger: ModelCard | None = None
    challenger_served_from: str | None = None


def applicant_body(applicant: ApplicantLike | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """One applicant as the JSON the service takes, given positionally or as keywords."""
    if applicant is not None and fields:
        msg = "pass one applicant, or its fields as keywords, not both"
        raise TypeError(msg)
    if applicant is None:
        if not fields:
            msg = "no applicant: pass an Applicant, a mapping of its fields, or the fields"
            raise TypeError(msg)
        return dict(fields)
    return _as_json(applicant)


def batch_body(applicants: Iterable[ApplicantLike]) -> list[dict[str, Any]]:
    """A batch as the JSON array the service takes, in the caller's order."""
    if isinstance(applicants, BaseModel | Mapping | str | bytes):
        msg = "classify_batch takes a sequence of applicants; use classify for one"
        raise TypeError(msg)
    return [_as_json(applicant) for applicant in applicants]


def _as_json(applicant: object) -> dict[str, Any]:  # callers may ignore the types
    if isinstance(applicant, BaseModel):
        return applicant.model_dump(mode="json")
    if isinstance(applicant, Mapping):
        return dict(applicant)
    msg = f"an applicant is an Applicant or a mapping of its fields, not {type(applicant).__name__}"
    raise TypeError(msg)


def headers(token: str | None) -> dict[str, str]:
    """Headers sent with every request: who is calling, and the bearer token if any."""
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return sent


def timeout(connect_s: float, read_s: float) -> httpx.Timeout:
    """Connect bounds making a connection; read bounds each wait for the server (and writes)."""
    return httpx.Timeout(read_s, connect=connect_s)


def answer(response: httpx.Response, model: type[Answer]) -> Answer:
    """The answer of a success as `model`; a refusal raised as its exception."""
    if not response.is_success:
        raise error_from_response(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        msg = (
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not a {model.__name__}: "
            f"{exc.error_count()} error(s), first {exc.errors()[0]['msg']!r}"
        )
        raise UnexpectedAnswerError(msg, status=response.status_code) from exc


def transport_error(exc: httpx.TransportError, url: str) -> CreditRiskError:
    """A failure below HTTP as the client's error: was anything sent?"""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServiceUnreachableError(f"cannot connect to {url}: {exc or type(exc).__name__}")
    return NoAnswerError(f"no answer from {url}: {type(exc).__name__}: {exc}".rstrip(": "))
