"""Bad input is the client's mistake: say which fields, and do not log it as a server error.

Upstream (BentoML 1.4.40, checked): a body that fails validation is answered 400 with
`{"error": "N validation error for <IODescriptor class>", "detail": [...]}`, a message that names
no field, and `bentoml._internal.server.http_app` logs every such request at ERROR with a full
traceback, so a client sending bad data floods the error log and buries real server errors.

BentoML also prefixes the locations of a list body's errors with "root" (`["root", 1,
"housing"]`) where a single body's start at the field.

Here `ErrorMessageMiddleware` rewrites the 400's `error` into one line naming each offending
field and gives every `detail[].loc` one shape, the path inside the request body, and
`ClientErrorLogFilter` demotes those records to one INFO line. Canaries:
tests/serving/workarounds/test_validation_errors.py (delete the middleware once BentoML names
the fields in one location shape, the filter once it logs client errors below ERROR).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from pydantic import ValidationError

from credit_risk.serving.asgi import ASGIApp, Message, Receive, Scope, Send, run_rewriting_response

MAX_ERRORS_IN_MESSAGE: Final = 5
"""Errors spelled out in the one-line message; the full list stays in `detail`."""


def body_location(loc: list[Any]) -> list[Any]:
    """Where in the request body an error is: `["age_years"]` for one applicant, `[1, "housing"]`
    for a batch, `[]` for the body as a whole; BentoML's list wrapper adds a leading "root"."""
    return loc[1:] if loc[:1] == ["root"] else loc


def validation_message(detail: list[dict[str, Any]], total: int | None = None) -> str:
    """One line naming each offending field, as its location joined by dots (`body` for the body
    as a whole): `invalid input: age_years: Field required; 1.housing: ...`; `total` counts the
    errors when `detail` lists only the first ones."""
    parts = []
    for err in detail[:MAX_ERRORS_IN_MESSAGE]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = (len(detail) if total is None else total) - MAX_ERRORS_IN_MESSAGE
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid input: " + "; ".join(parts)


class ErrorMessageMiddleware:
    """Rewrite BentoML's generic 400 ("N validation error for ...IODescriptor") into a message
    that names every offending field; each `detail[].loc` becomes its `body_location`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer only 400 JSON responses; everything else streams through untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await run_rewriting_response(
            self.app,
            scope,
            receive,
            send,
            wants=lambda start: start["status"] == 400,
            rewrite=_name_fields,
        )


def _name_fields(_start: Message, body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    detail = data.get("detail") if isinstance(data, dict) else None
    if not (isinstance(detail, list) and detail):
        return body
    for err in detail:
        if isinstance(err, dict) and isinstance(err.get("loc"), list):
            err["loc"] = body_location(err["loc"])
    data["error"] = validation_message(detail)
    return json.dumps(data).encode()


BENTOML_REQUEST_ERROR_LOGGER: Final = "bentoml._internal.server.http_app"
"""Where BentoML 1.4 logs every failed request, client errors included, with a traceback."""


class ClientErrorLogFilter(logging.Filter):
    """Log a rejected payload as one INFO line, not an ERROR with a traceback: bad input is the
    client's mistake and must not page anyone or bury real server errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote records whose exception is a pydantic ValidationError; keep all others."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            args = record.args if isinstance(record.args, tuple) else ()
            record.msg = "%s [%s]: rejected invalid input (%d errors)"
            record.args = (*args[:2], exc.error_count())
            record.exc_info = None
            record.exc_text = None
        return True


def install_client_error_log_filter() -> None:
    """Attach the filter once per process."""
    logger = logging.getLogger(BENTOML_REQUEST_ERROR_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
        logger.addFilter(ClientErrorLogFilter())
