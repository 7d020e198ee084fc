"""The floor: a decision's HTTP round trip on this machine with no framework around it. A bare
Starlette app under uvicorn, as many workers as our API service, validating the same `Applicant`
with the same pydantic model and answering one constant decision: no model, runner, record or
metrics. `make bench` states ours as ratios of it (docs/performance.md).
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
