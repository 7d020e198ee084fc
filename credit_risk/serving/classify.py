"""What /classify and /classify_batch do once a request is admitted and validated.

Encode the applicants, score them on the runner, decide by the champion's rule, record the
decisions in the decision store (the challenger's shadow records beside them) and only then
count and answer them, with JSON serialised once from plain dicts in the `Decision` layout:
building pydantic objects and BentoML's per-response schema work cost more than scoring a
decision. No answer without a committed record: a store that refuses is a 503 naming the cause.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.arrays import FloatArray
from credit_risk.decision_store import StoreUnavailableError, new_records
from credit_risk.decision_store.writer import DecisionRecorder
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.recourse import RecourseColumns
from credit_risk.schema import FEATURES, Application
from credit_risk.serving import metrics
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

    def __init__(
        self,
        rule: DecisionRule,
        shadow: Shadow | None,
        runner: RunnerClient,
        recorder: DecisionRecorder,
    ) -> None:
        self.rule = rule
        self.shadow = shadow
        self.runner = runner
        self.recorder = recorder

    @classmethod
    def for_models(
        cls,
        champion: Any,
        challenger: Any | None,
        runner: RunnerClient,
        recorder: DecisionRecorder,
    ) -> Classifier:
        """Deciding by the champion's stored rule (BentoML model infos), the challenger's
        records kept in shadow."""
        rule = DecisionRule.from_model(str(champion.tag), dict(champion.metadata))
        shadow = (
            Shadow(str(challenger.tag), dict(challenger.metadata), rule.model_version)
            if challenger
            else None
        )
        return cls(rule, shadow, runner, recorder)

    async def answer(self, applicants: Sequence[Application], *, single: bool = False) -> Response:
        """The JSON answer: one decision (`single`) or the list, in input order; 503 if the
        runner cannot be reached, did not answer in time, or the decision store cannot record
        (the message says which)."""
        try:
            decisions = await self.decide(applicants)
        except RunnerUnavailableError:
            return _unavailable(RUNNER_UNAVAILABLE)
        except RunnerBusyError:
            return _unavailable(RUNNER_BUSY)
        except StoreUnavailableError as exc:
            # nothing was recorded, so nothing may be answered: the decision is withheld
            return _unavailable(
                to_json({"error": store_unavailable(exc.cause), "cause": exc.cause})
            )
        return Response(
            to_json(decisions[0] if single else decisions), media_type="application/json"
        )

    async def decide(self, applicants: Sequence[Application]) -> list[dict[str, Any]]:
        """Decisions in the `Decision` layout, committed to the store, then counted."""
        out: FloatArray = await self.runner.score(encode_applicants(applicants))
        assert out.shape[0] == len(applicants), "runner returned one row per applicant"
        excess, recourse = out[:, 1 : 1 + len(FEATURES)], out[:, 1 + len(FEATURES) : WIDTH]
        decisions = self.rule.records(out[:, 0], excess, RecourseColumns.from_array(recourse))
        shadow = self.shadow.records(len(decisions), out) if self.shadow else None
        refs = [a.application_id for a in applicants]
        for d, ref in zip(decisions, refs, strict=True):
            d["application_id"] = ref
        # no answer without a record: this returns once the records are committed
        await self.recorder.record(
            new_records(
                applicants,
                decisions,
                shadow,
                application_ids=refs,
                policy_version=self.rule.policy_version,
            )
        )
        outcomes = Counter((d["decision"], d["risk_band"]) for d in decisions)
        for (decision, band), count in outcomes.items():
            metrics.DECISIONS.labels(decision, band, self.rule.model_version).inc(count)
        for d in decisions:
            metrics.PROBABILITY.observe(d["probability_of_default"])
        return decisions


def store_unavailable(cause: str) -> str:
    """The 503's message when the decision store refused the records."""
    return (
        f"the decision store cannot record decisions ({cause}); nothing was decided, retry shortly"
    )


def _unavailable(body: bytes) -> Response:
    """Our own 503: BentoML would replace the message of any 5xx it renders."""
    return Response(
        body,
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
