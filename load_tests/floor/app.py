"""The floor: what a decision's HTTP round trip costs on this machine with no framework around it.

A bare Starlette app under uvicorn, with as many workers as our API service, that validates the
same `Applicant` with the same pydantic model and answers one constant decision: no model, no
runner, no record, no metrics. `make bench` measures it beside our service in the same run and
states our CPU per request and requests/s as ratios of it.

    uvicorn load_tests.floor.app:app --workers 2 --no-access-log
"""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from credit_risk.schema import Application, Decision

APPLICANT: Final = TypeAdapter(Application)
CONSTANT: Final = to_json(
    Decision(
        probability_of_default=0.0,
        decision="approve",
        threshold=0.5,
        score=600,
        risk_band="A",
        reason_codes=[],
        recourse=None,
        model_version="floor",
        decision_id="0" * 32,
        application_id=None,
    ).model_dump(mode="json")
)


async def classify(request: Request) -> Response:
    """Validate one applicant, answer the constant decision."""
    try:
        APPLICANT.validate_json(await request.body())
    except ValidationError as exc:
        return Response(to_json({"error": str(exc)}), 400, media_type="application/json")
    return Response(CONSTANT, media_type="application/json")


async def ready(_: Request) -> Response:
    """Readiness, as the benchmark polls every server."""
    return Response(b"\n")


app = Starlette(routes=[Route("/classify", classify, methods=["POST"]), Route("/readyz", ready)])
