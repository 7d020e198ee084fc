"""Every API body is JSON before BentoML reads it.

Upstream (BentoML 1.4.40, checked): BentoML picks its body parser by Content-Type and, for form
types, falls into Starlette's multipart parser, which answers malformed form data with a 500.
For a list parameter (/classify_batch) it parses with `json.loads` and lets the JSONDecodeError
(or the RecursionError of a deeply nested body, or the ValueError of a 5,000-digit number)
escape as a 500. Found by schemathesis against the served document (tests/service/
test_fuzz_api.py). Canary: tests/serving/workarounds/test_json_body.py, which fails once
BentoML itself answers those bodies with a 4xx; then this module can go.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Final

from credit_risk.serving.asgi import (
    BODILESS_METHODS,
    ASGIApp,
    ClientGoneError,
    Receive,
    Scope,
    Send,
    read_body,
    replay_body,
    send_json,
)
from credit_risk.serving.workarounds.openapi_document import JSON_MEDIA_TYPE


class JsonBodyMiddleware:
    """Make every API body JSON before BentoML reads it: 415 for another media type, 400 naming
    the position for malformed JSON.

    BentoML picks its parser by Content-Type and, for form types, falls into Starlette's
    multipart parser, which answers malformed form data with a 500. For a list parameter
    (/classify_batch) it parses with `json.loads` and lets the JSONDecodeError (or the
    RecursionError of a deeply nested body, or the ValueError of a 5,000-digit number) escape
    as a 500. Checking with the same `json.loads` first refuses exactly what it would choke on.
    An empty body is refused as such on `body_paths` (BentoML would read it as `{}` and name
    every missing field); elsewhere (an endpoint without parameters) it passes.
    """

    def __init__(
        self, app: ASGIApp, api_paths: Iterable[str], body_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.api_paths = frozenset(api_paths)
        self.body_paths = frozenset(body_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check API request bodies; pass other paths and bodiless methods straight through."""
        if (
            scope["type"] != "http"
            or scope["path"] not in self.api_paths
            or scope.get("method") in BODILESS_METHODS
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-type", b"")
        media_type = declared.split(b";")[0].strip().lower().decode("latin-1")
        if media_type and media_type != JSON_MEDIA_TYPE:
            await send_json(
                send,
                415,
                {
                    "error": f"unsupported Content-Type {media_type!r}: "
                    f"send the body as {JSON_MEDIA_TYPE}",
                    "accepted": [JSON_MEDIA_TYPE],
                },
            )
            return

        try:  # BodyLimitMiddleware, further out, has already bounded the size
            body = await read_body(receive)
        except ClientGoneError:
            return
        if not body and scope["path"] in self.body_paths:
            await send_json(send, 400, {"error": EMPTY_BODY})
            return
        problem = json_problem(body) if body else None
        if problem is not None:
            detail = {"type": "json_invalid", "loc": [], "msg": f"Invalid JSON: {problem}"}
            await send_json(
                send, 400, {"error": f"invalid input: body: {detail['msg']}", "detail": [detail]}
            )
            return
        await self.app(scope, replay_body(body, receive), send)


EMPTY_BODY: Final = "the request body is empty: send the applicant(s) as JSON"


def json_problem(body: bytes) -> str | None:
    """Why `json.loads` (BentoML's parser for list bodies) would refuse `body`, or None."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return str(exc)
    except UnicodeDecodeError:
        return "the body is not UTF-8 text"
    except RecursionError:
        return "nested too deeply"
    except ValueError:  # the only other refusal: Python's cap on digits in an integer
        return f"a number longer than {sys.get_int_max_str_digits()} digits"
    return None
