"""The two scoring routes answered outside BentoML's request stack.

Upstream (BentoML 1.4.40, checked): every request to an `@bentoml.api` method passes
OpenTelemetry's ASGI middleware (a span per request, even with no exporter configured), the
request-metrics middleware, the timeout, the context middleware, Starlette's router, the IO
descriptor's request parser and its response serialiser, and each user middleware as a further
Starlette layer. Measured with wrk at 64 connections on 2 cores (docs/performance.md), those
layers took most of an API worker: a bare Starlette app that validates the same `Applicant`
costs ~0.2 ms of CPU per request, the same app mounted in a BentoML service ~1.2-1.5 ms, the
service as built 1.5-2.5 ms.

Here `ScoringRoute`, a layer outside BentoML's app (credit_risk/serving/edge.py), answers
`POST /classify` and `POST /classify_batch` itself: the same pydantic validation, the same
`Classifier` (runner, decisions, records, metrics), the same JSON. BentoML still serves every
other route and request, and the two `@bentoml.api` methods stay the documented contract: the
OpenAPI document, `/schema.json` for BentoML's own clients, and the in-process path. The runner
keeps BentoML's dependency proxy and adaptive batching. What the route saves is measured in
`make bench` (ours against the floor) and in docs/performance.md.

The canary in tests/serving/workarounds/test_scoring_route.py fails once BentoML stops wrapping
each request in a tracing span with tracing unconfigured, or stops running user middleware as
Starlette layers around its handler; then measure BentoML's own path again and delete this
module if it comes within reach of the floor.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import bentoml
from pydantic_core import to_json

from credit_risk.schema import Application
from credit_risk.serving.applicant_input import InvalidBodyError, applicants
from credit_risk.serving.asgi import (
    ASGIApp,
    BodyTooLargeError,
    ClientGoneError,
    Receive,
    Scope,
    Send,
    read_body,
)
from credit_risk.serving.classify import RETRY, Answer
from credit_risk.serving.tuning import LANE_FROM_BYTES
from credit_risk.serving.validation_lane import LaneBusyError, ValidationLane
from credit_risk.serving.workarounds.json_body import EMPTY_BODY
from credit_risk.serving.workarounds.openapi_document import JSON_MEDIA_TYPE

ROUTES: Final = {"/classify": True, "/classify_batch": False}
"""Path -> whether its body is one applicant (else a list of them)."""
CONTENT_TYPE: Final = (b"content-type", JSON_MEDIA_TYPE.encode())
INTERNAL_ERROR: Final = (
    "an internal error stopped this decision; nothing was decided (see the server log)"
)
LANE_BUSY: Final = Answer(
    429,
    to_json({"error": "server busy: this worker is validating other large bodies; retry later"}),
    RETRY,
)

logger = logging.getLogger(__name__)


class ScoringRoute:
    """Answer the scoring routes without entering BentoML's stack; pass everything else on.

    Its refusals are counted by status at the edge (serving/request_metrics.py).
    """

    outside_bentoml: Final = True
    """Wraps the whole app BentoML builds (credit_risk/serving/edge.py)."""

    def __init__(
        self,
        app: ASGIApp,
        timeout_s: float,
        max_body_bytes: int,
        *,
        lane: ValidationLane | None = None,
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self._service: Any = None
        self._lane = lane if lane is not None else ValidationLane()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST to a scoring route is answered here; anything else goes to BentoML."""
        single = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if single is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        answer = await self._answer(scope, receive, single=single)
        if answer is None:  # the client left before its body arrived
            return
        headers = [
            CONTENT_TYPE,
            (b"content-length", str(len(answer.body)).encode()),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(self, scope: Scope, receive: Receive, *, single: bool) -> Answer | None:
        body = await self._body(scope, receive)
        if not isinstance(body, bytes):
            return body  # a refusal, or None when the client has left
        found = await self._validated_in_turn(body, single=single)
        if isinstance(found, Answer):
            return found
        try:  # the deadline runs per decision batch (classify.py), not per request
            answer: Answer = await self._classifier().answer(found, single=single)
        except TimeoutError:
            message = f"Not able to process the request in {self.timeout_s:g} seconds"
            return _refuse(504, {"error": message})
        except Exception:  # a fault of ours: logged whole, answered in one JSON line
            logger.exception("deciding %d applicant(s) failed", len(found))
            return _refuse(500, {"error": INTERNAL_ERROR})
        return answer

    async def _body(self, scope: Scope, receive: Receive) -> bytes | Answer | None:
        refusal = self._media_type_refusal(scope)
        if refusal is not None:
            return refusal
        try:
            body = await read_body(receive, self.max_body_bytes)
        except ClientGoneError:
            return None
        except BodyTooLargeError:
            return _refuse(413, too_large(self.max_body_bytes))
        return body or _refuse(400, {"error": EMPTY_BODY})

    def _media_type_refusal(self, scope: Scope) -> Answer | None:
        declared = dict(scope.get("headers") or []).get(b"content-type", b"")
        media_type = declared.split(b";")[0].strip().lower().decode("latin-1")
        if not media_type or media_type == JSON_MEDIA_TYPE:
            return None
        error = f"unsupported Content-Type {media_type!r}: send the body as {JSON_MEDIA_TYPE}"
        return _refuse(415, {"error": error, "accepted": [JSON_MEDIA_TYPE]})

    async def _validated_in_turn(self, body: bytes, *, single: bool) -> list[Application] | Answer:
        if len(body) <= LANE_FROM_BYTES:
            return _validated(body, single=single)
        try:
            async with self._lane.turn(len(body)) as turn:  # one at a time, after those waiting
                found = _validated(body, single=single)
                turn.refused = isinstance(found, Answer)  # only refusals pace the next
                return found
        except LaneBusyError:
            return LANE_BUSY

    def _classifier(self) -> Any:
        if self._service is None:  # set once BentoML has created the service instance
            self._service = bentoml.get_current_service()
        return self._service.classifier


def _validated(body: bytes, *, single: bool) -> list[Application] | Answer:
    try:
        return applicants(body, single=single)
    except InvalidBodyError as exc:
        return _refuse(400, exc.answer)


def _refuse(status: int, body: dict[str, Any]) -> Answer:
    return Answer(status, to_json(body))


def too_large(limit: int) -> dict[str, Any]:
    """A 413's body."""
    return {"error": f"request body exceeds the limit of {limit} bytes", "limit_bytes": limit}
