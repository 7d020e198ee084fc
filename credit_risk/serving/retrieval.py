"""Finding a decision again: `GET /decisions/{decision_id}`, `GET /decisions?application_id=...`
and a decline's adverse-action notice, `GET /decisions/{decision_id}/notice` (serving/notice.py),
a small Starlette app BentoML mounts at /decisions.

Behind the same bearer-token auth as scoring (service.py registers the prefix). Each API worker
reads through a store connection of its own, opened at the first lookup and used from one
thread, so a lookup never holds up the event loop or the recorder's writes. An answer holds the
inputs, the outputs, the reasons in words, the model and policy versions and the record's
integrity fields (`DecisionRecord.view`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from credit_risk.decision_store import DecisionRecord, DecisionStore, StoreUnavailableError
from credit_risk.decision_store.errors import cause_of
from credit_risk.schema import APPLICATION_ID_PATTERN
from credit_risk.serving.asgi import ASGIApp, Receive, Scope, Send
from credit_risk.serving.notice import HEADERS as NOTICE_HEADERS
from credit_risk.serving.notice import NotADeclineError, render_notice

DECISIONS_PATH: Final = "/decisions"
"""Where BentoML mounts this app (service.py), and the prefix the bearer token guards."""
DECISION_ID: Final = re.compile(r"[0-9a-f]{32}")
"""A decision id as the service makes them: 32 lowercase hex digits (a millisecond clock, then
80 random bits: credit_risk/decisions.py)."""
DECISIONS_SUBPATHS: Final = r"(?:[^/]+(?:/notice)?)?"
"""The paths below the prefix the routes serve: `/`, `/<id>` and `/<id>/notice` (any id: a
malformed one is answered by its route). The edge answers every other one (serving/routes.py)."""
MALFORMED_ID: Final = (
    "decision_id must be 32 lowercase hexadecimal characters, as in an answer's decision_id"
)
APPLICATION_ID: Final = re.compile(APPLICATION_ID_PATTERN)

T = TypeVar("T")


class StoreReader:
    """One worker's read connection to the store, opened on first use, used from one thread."""

    def __init__(self, open_store: Callable[[], DecisionStore]) -> None:
        self._open = open_store
        self._store: DecisionStore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision-reads")

    def _call(self, query: Callable[[DecisionStore], T]) -> T:
        if self._store is None:
            self._store = self._open()
        return query(self._store)

    async def run(self, query: Callable[[DecisionStore], T]) -> T:
        """Run `query` against the store off the event loop; a failure is a short cause."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._call, query
            )
        except Exception as exc:  # any store failure is a 503 naming its cause
            raise StoreUnavailableError(cause_of(exc), type(exc).__name__) from exc


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(open_store: Callable[[], DecisionStore]) -> Starlette:
    """The retrieval routes over the store `open_store` opens (once per worker)."""
    reader = StoreReader(open_store)

    async def lookup(request: Request) -> DecisionRecord | Response:
        """The record the path names, or the JSON refusal (400, 404, 503) in its place."""
        decision_id = request.path_params["decision_id"]
        if not DECISION_ID.fullmatch(decision_id):
            return _error(400, MALFORMED_ID)
        try:
            record = await reader.run(lambda store: store.get(decision_id))
        except StoreUnavailableError as exc:
            return _error(503, f"the decision store is unavailable ({exc.cause})", cause=exc.cause)
        if record is None:
            return _error(404, f"no decision {decision_id} in the decision store")
        return record

    async def by_id(request: Request) -> Response:
        found = await lookup(request)
        return found if isinstance(found, Response) else JSONResponse(found.view())

    async def notice(request: Request) -> Response:
        found = await lookup(request)
        if isinstance(found, Response):
            return found
        try:
            page = render_notice(found)
        except NotADeclineError as exc:
            return _error(409, str(exc), decision=found.decision)
        return HTMLResponse(page, headers=NOTICE_HEADERS)

    async def by_application(request: Request) -> Response:
        ref = request.query_params.get("application_id")
        if ref is None:
            return _error(400, "give ?application_id=<reference>, or GET /decisions/<decision_id>")
        if not APPLICATION_ID.fullmatch(ref):
            return _error(
                400,
                "application_id must be 1 to 64 characters of letters, digits and . _ : -",
            )
        try:
            records = await reader.run(lambda store: store.by_application(ref))
        except StoreUnavailableError as exc:
            return _error(503, f"the decision store is unavailable ({exc.cause})", cause=exc.cause)
        return JSONResponse({"application_id": ref, "decisions": [r.view() for r in records]})

    return Starlette(
        routes=[
            Route("/", by_application, methods=["GET"]),
            Route("/{decision_id}", by_id, methods=["GET"]),
            Route("/{decision_id}/notice", notice, methods=["GET"]),
        ]
    )


class BarePathMiddleware:
    """Route `GET /decisions?application_id=...` as written: a mounted app only matches below
    its prefix, and Starlette would answer the bare prefix with a 307 to `/decisions/`."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Give the bare prefix its trailing slash; pass everything else through."""
        if scope["type"] == "http" and scope["path"] == self.path:
            slashed = self.path + "/"
            scope = {**scope, "path": slashed, "raw_path": slashed.encode()}
        await self.app(scope, receive, send)
