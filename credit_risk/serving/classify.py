"""What /classify and /classify_batch do once a request is admitted and validated.

Encode the applicants, score them on the runner, decide by the champion's rule, log the
decisions (the challenger's shadow records beside them), count them, and answer with JSON
serialised once from plain dicts in the `Decision` layout: building pydantic objects and
BentoML's per-response schema work cost more than scoring a decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.arrays import FloatArray
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.schema import Applicant
from credit_risk.serving import metrics
from credit_risk.serving.decision_log import log_decisions
from credit_risk.serving.runner_client import (
    RunnerBusyError,
    RunnerClient,
    RunnerUnavailableError,
)
from credit_risk.serving.shadow import WIDTH, Shadow
from credit_risk.serving.tuning import RUNNER_DEADLINE_S
from credit_risk.serving.workarounds.admission_gate import RETRY_AFTER_S

RUNNER_UNAVAILABLE = (
    b'{"error":"the model runner is unavailable (restarting?); nothing was scored, retry shortly"}'
)
RUNNER_BUSY = (
    b'{"error":"server busy: the model runner did not answer within %g s; nothing was scored, '
    b'retry shortly"}' % RUNNER_DEADLINE_S
)


class Classifier:
    """The API worker's side of a decision: everything but validation and the model itself."""

    def __init__(self, rule: DecisionRule, shadow: Shadow | None, runner: RunnerClient) -> None:
        self.rule = rule
        self.shadow = shadow
        self.runner = runner

    @classmethod
    def for_models(cls, champion: Any, challenger: Any | None, runner: RunnerClient) -> Classifier:
        """Deciding by the champion's stored rule (BentoML model infos), the challenger's
        records kept in shadow."""
        rule = DecisionRule.from_model(str(champion.tag), dict(champion.metadata))
        shadow = (
            Shadow(str(challenger.tag), dict(challenger.metadata), rule.model_version)
            if challenger
            else None
        )
        return cls(rule, shadow, runner)

    async def answer(self, applicants: Sequence[Applicant], *, single: bool = False) -> Response:
        """The JSON answer: one decision (`single`) or the list, in input order; 503 if the
        runner cannot be reached or did not answer in time (the message says which)."""
        try:
            decisions = await self.decide(applicants)
        except RunnerUnavailableError:
            return _unavailable(RUNNER_UNAVAILABLE)
        except RunnerBusyError:
            return _unavailable(RUNNER_BUSY)
        return Response(
            to_json(decisions[0] if single else decisions), media_type="application/json"
        )

    async def decide(self, applicants: Sequence[Applicant]) -> list[dict[str, Any]]:
        """Decisions in the `Decision` layout, logged and counted."""
        out: FloatArray = await self.runner.score(encode_applicants(applicants))
        assert out.shape[0] == len(applicants), "runner returned one row per applicant"
        decisions = self.rule.records(out[:, 0], out[:, 1:WIDTH])
        shadow = self.shadow.records(len(decisions), out) if self.shadow else None
        log_decisions(applicants, decisions, shadow)
        outcomes = Counter((d["decision"], d["risk_band"]) for d in decisions)
        for (decision, band), count in outcomes.items():
            metrics.DECISIONS.labels(decision=decision, risk_band=band).inc(count)
        for d in decisions:
            metrics.PROBABILITY.observe(d["probability_of_default"])
        return decisions


def _unavailable(body: bytes) -> Response:
    """Our own 503: BentoML would replace the message of any 5xx it renders."""
    return Response(
        body,
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
