"""What BentoML itself costs: our service's topology with no model, for the benchmark's ceiling.

Same shape as `service.py` (2 API workers validating the same `Applicant`, a batchable runner in
its own process, JSON serialised once), but the runner returns zeros and the API one constant
decision: no encoding, scoring, coalescing, decision log, metrics or middlewares. What
`/classify` reaches here is the most ours could on the same machine, in the same `make bench`.
"""

from __future__ import annotations

import gc
from typing import Any, Final

import bentoml
import numpy as np
from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.recourse import RECOURSE_COLUMNS
from credit_risk.schema import FEATURES, Applicant, Decision
from credit_risk.serving.tuning import (
    REQUEST_TIMEOUT_S,
    RUNNER_MAX_BATCH_SIZE,
    RUNNER_MAX_LATENCY_MS,
)

RUNNER_COLUMNS: Final = 1 + len(FEATURES) + RECOURSE_COLUMNS
"""Width of our runner's answer: P(default), one excess log-odds per feature, the recourse."""

CONSTANT_DECISION: Final[dict[str, Any]] = Decision(
    probability_of_default=0.0,
    decision="approve",
    threshold=0.5,
    score=600,
    risk_band="A",
    reason_codes=[],
    recourse=None,
    model_version="no-op",
    decision_id="0" * 32,
).model_dump(mode="json")
"""The one answer, validated against the schema once at import."""


def _freeze_startup_garbage() -> None:
    gc.collect()  # as service.py does, so the two pay the same cyclic-GC cost under load
    gc.freeze()


@bentoml.service(
    name="ceiling_scorer",
    workers=1,
    runner_connection={"max_requests": 10_000},
    logging={"access": {"enabled": False}},
)
class CeilingScorer:
    """Runner that scores nothing: the cost of BentoML's batching and runner hop alone."""

    def __init__(self) -> None:
        _freeze_startup_garbage()

    @bentoml.api(
        batchable=True,
        max_batch_size=RUNNER_MAX_BATCH_SIZE,
        max_latency_ms=RUNNER_MAX_LATENCY_MS,
    )
    async def score(self, rows: np.ndarray) -> np.ndarray:
        """One row of zeros per input row, the shape our runner answers with."""
        return np.zeros((len(rows), RUNNER_COLUMNS))


@bentoml.service(
    name="ceiling_service",
    workers=2,
    traffic={"timeout": REQUEST_TIMEOUT_S},
    logging={"access": {"enabled": False}},
)
class CeilingService:
    """API that validates an applicant, awaits the runner once, and returns a fixed decision."""

    scorer = bentoml.depends(CeilingScorer)

    def __init__(self) -> None:
        self._row = np.zeros((1, len(FEATURES)))
        _freeze_startup_garbage()

    @bentoml.api
    async def classify(self, applicant: Applicant, /) -> Decision:  # noqa: ARG002 (parsed, unused)
        """The same request and response types as ours, with nothing computed in between."""
        out: np.ndarray = await self.scorer.to_async.score(self._row)
        assert out.shape[0] == 1, "runner returned one row"
        return _json_response(CONSTANT_DECISION)  # type: ignore[return-value]


def _json_response(content: Any) -> Response:
    # serialised per request, as service.py does: both pay the same for their answer
    return Response(to_json(content), media_type="application/json")
