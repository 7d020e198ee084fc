"""Every API body is JSON before BentoML reads it.

Upstream (BentoML 1.4.40, checked): BentoML picks its body parser by Content-Type and, for form
types, falls into Starlette's multipart parser, which answers malformed form data with a 500.
For a list parameter (/classify_batch) it parses with `json.loads` and lets the JSONDecodeError
(or the RecursionError of a deeply nested body, or the ValueError of a 5,000-digit number)
escape as a 500. Found by schemathesis against the served document (tests/service/
test_fuzz_api.py). Canary: tests/serving/workarounds/test_json_body.py, which fails once
BentoML itself answers those bodies with a 4xx; then this module can go, and the duplicate-key
check with it moves to wherever the body is parsed.

The same parse refuses an object that names a key twice (`json.loads` keeps the last value
silently, so `{"age_years": 70, ..., "age_years": 17}` was scored as 17): 400 naming the key.
The media type and encoding are checked before the body is read (serving/middleware.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, Final

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


class JsonBodyMiddleware:
    """Make every API body JSON before BentoML reads it: 400 naming the position for malformed
    JSON, and naming the key for an object that has it twice.

    For a list parameter (/classify_batch) BentoML parses with `json.loads` and lets the
    JSONDecodeError (or the RecursionError of a deeply nested body, or the ValueError of a
    5,000-digit number) escape as a 500. Checking with the same `json.loads` first refuses
    exactly what it would choke on. An empty body is refused as such on `body_paths` (BentoML
    would read it as `{}` and name every missing field); elsewhere (an endpoint without
    parameters) it passes.
    """

    outside_bentoml: Final = True

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
        try:  # the admission gate, further out, has already read and bounded it
            body = await read_body(receive)
        except ClientGoneError:
            return
        if not body and scope["path"] in self.body_paths:
            await send_json(send, 400, {"error": EMPTY_BODY})
            return
        problem = json_problem(body) if body else None
        if problem is not None:
            kind, msg = problem
            detail = {"type": kind, "loc": [], "msg": msg}
            await send_json(send, 400, {"error": f"invalid input: body: {msg}", "detail": [detail]})
            return
        await self.app(scope, replay_body(body, receive), send)


DUPLICATE_KEY: Final = "json_duplicate_key"
"""The error type of a key named twice in one object."""
EMPTY_BODY: Final = "the request body is empty: send the applicant(s) as JSON"


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def json_problem(body: bytes) -> tuple[str, str] | None:
    """Why `json.loads` (BentoML's parser for list bodies) would refuse `body`, or which key an
    object repeats, as (error type, message); None for a sound body."""
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except DuplicateKeyError as exc:
        return DUPLICATE_KEY, f"duplicate key {exc.key!r} in a JSON object"
    except json.JSONDecodeError as exc:
        return "json_invalid", f"Invalid JSON: {exc}"
    except UnicodeDecodeError:
        return "json_invalid", "Invalid JSON: the body is not UTF-8 text"
    except RecursionError:
        return "json_invalid", "Invalid JSON: nested too deeply"
    except ValueError:  # the only other refusal: Python's cap on digits in an integer
        digits = sys.get_int_max_str_digits()
        return "json_invalid", f"Invalid JSON: a number longer than {digits} digits"
    return None
