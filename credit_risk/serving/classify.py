"""What /classify and /classify_batch do once a request is admitted and validated.

The applicants of every request that gets this far in one turn of the event loop are decided as
one batch (serving/coalesce.py): encoded, scored on the runner in one call, decided by the
champion's rule, logged (the challenger's shadow records beside them) and counted, each step once
per batch rather than once per request. Each request is then answered with JSON serialised once
from plain dicts in the `Decision` layout: building pydantic objects and BentoML's per-response
schema work cost more than scoring a decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.arrays import FloatArray
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.schema import Applicant
from credit_risk.serving import metrics
from credit_risk.serving.coalesce import Coalescer
from credit_risk.serving.decision_log import log_decisions
from credit_risk.serving.runner_client import RunnerClient, RunnerUnavailableError
from credit_risk.serving.shadow import WIDTH, Shadow
from credit_risk.serving.tuning import RUNNER_MAX_BATCH_SIZE
from credit_risk.serving.workarounds.admission_gate import RETRY_AFTER_S

RUNNER_UNAVAILABLE = (
    b'{"error":"the model runner is unavailable (restarting?); nothing was scored, retry shortly"}'
)


@dataclass(frozen=True)
class Answer:
    """A JSON answer, whichever route sends it."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self) -> Response:
        """As a Starlette response (BentoML's handlers; ours send the bytes themselves)."""
        headers = {k.decode(): v.decode() for k, v in self.headers}
        return Response(self.body, self.status, headers, media_type="application/json")


RETRY: Final = ((b"retry-after", str(RETRY_AFTER_S).encode()),)


class Classifier:
    """The API worker's side of a decision: everything but validation and the model itself."""

    def __init__(
        self, rule: DecisionRule, shadow: Shadow | None, runner: RunnerClient, *, coalesce: bool
    ) -> None:
        self.rule = rule
        self.shadow = shadow
        self.runner = runner
        turns: Coalescer[Applicant, dict[str, Any]] = Coalescer(
            self.decide, max_items=RUNNER_MAX_BATCH_SIZE
        )
        self._decide = turns.submit if coalesce else self.decide

    @classmethod
    def for_models(
        cls, champion: Any, challenger: Any | None, runner: RunnerClient, *, coalesce: bool
    ) -> Classifier:
        """Deciding by the champion's stored rule (BentoML model infos), the challenger's
        records kept in shadow."""
        rule = DecisionRule.from_model(str(champion.tag), dict(champion.metadata))
        shadow = (
            Shadow(str(challenger.tag), dict(challenger.metadata), rule.model_version)
            if challenger
            else None
        )
        return cls(rule, shadow, runner, coalesce=coalesce)

    async def answer(self, applicants: Sequence[Applicant], *, single: bool = False) -> Answer:
        """The JSON answer: one decision (`single`) or the list, in input order; 503 if the
        runner cannot be reached."""
        try:
            decisions = await self._decide(applicants)
        except RunnerUnavailableError:
            return Answer(503, RUNNER_UNAVAILABLE, RETRY)
        return Answer(200, to_json(decisions[0] if single else decisions))

    async def decide(self, applicants: Sequence[Applicant]) -> list[dict[str, Any]]:
        """Decisions in the `Decision` layout, logged and counted, for one batch."""
        out: FloatArray = await self.runner.score(encode_applicants(applicants))
        assert out.shape[0] == len(applicants), "runner returned one row per applicant"
        decisions = self.rule.records(out[:, 0], out[:, 1:WIDTH])
        shadow = self.shadow.records(len(decisions), out) if self.shadow else None
        log_decisions(applicants, decisions, shadow)
        outcomes = Counter((d["decision"], d["risk_band"]) for d in decisions)
        for (decision, band), count in outcomes.items():
            metrics.DECISIONS.labels(decision=decision, risk_band=band).inc(count)
        metrics.observe_all(metrics.PROBABILITY, out[:, 0])
        return decisions
