"""What the client raises: one exception per thing a caller does differently.

Each carries the HTTP status (None when no answer came) and the service's one-line `error`
message. Only the errors raised before anything was scored are safe to retry (`retry_safe`):
429, 503, and a connection that could not be made. A 504, a lost answer or a read timeout may
have decided the applicant already: look the decision up instead of sending it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx


@dataclass(frozen=True)
class FieldError:
    """One refused value: where it is in the request body (`loc`), and why (`msg`)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def field(self) -> str:
        """The location as the service's message names it: `age_years`, `1.housing`, `body`."""
        return ".".join(str(part) for part in self.loc) or "body"


class CreditRiskError(Exception):
    """Base of everything the client raises."""

    retry_safe: ClassVar[bool] = False
    """Refused before anything was scored, so sending the request again cannot decide twice."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.message = message
        self.status = status


class APIError(CreditRiskError):
    """The service answered with a refusal: its status, message (`error`) and whole body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.body = body
        self.retry_after_s = retry_after_s


class InvalidApplicantError(APIError):
    """400: the applicant(s) or the body are not valid; `fields` names each offending field."""

    def __init__(self, status: int, message: str, *, body: Any = None, **kwargs: Any) -> None:
        super().__init__(status, message, body=body, **kwargs)
        self.errors: tuple[FieldError, ...] = _field_errors(body)
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(e.field for e in self.errors))


class AuthError(APIError):
    """401: the bearer token is missing or not one the service accepts."""


class ServiceBusyError(APIError):
    """429: the worker is at its in-flight limit; nothing was scored (`retry_after_s`)."""

    retry_safe = True


class ServiceUnavailableError(APIError):
    """503: the model runner is down or its queue is full; nothing was scored."""

    retry_safe = True


class ServiceUnreachableError(CreditRiskError):
    """No connection could be made to the service, so nothing was sent."""

    retry_safe = True


class NoAnswerError(CreditRiskError):
    """The request was sent but no whole answer came (timeout, connection lost): the applicant
    may have been decided, so it is not retried."""


class UnexpectedAnswerError(CreditRiskError):
    """A success whose body is not what the endpoint documents (another service at that URL?)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidApplicantError,
    401: AuthError,
    429: ServiceBusyError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for a refusal, with the service's message and any Retry-After."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(message, str):
        message = response.text.strip()[:200] or response.reason_phrase
    kind = _BY_STATUS.get(response.status_code, APIError)
    return kind(
        response.status_code,
        message,
        body=body,
        retry_after_s=retry_after_s(response.headers.get("Retry-After")),
    )


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), if valid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by the standard
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _field_errors(body: Any) -> tuple[FieldError, ...]:
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if not isinstance(detail, list):
        return ()
    return tuple(
        FieldError(
            loc=tuple(item.get("loc") or ()),
            msg=str(item.get("msg", "")),
            type=str(item.get("type", "")),
        )
        for item in detail
        if isinstance(item, Mapping)
    )
