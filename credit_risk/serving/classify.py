"""What /classify and /classify_batch do once a request is admitted and validated.

The applications of every request that gets this far in one turn of the event loop are decided
as one batch (serving/coalesce.py): encoded, scored on the runner in one call, decided by the
champion's rule, recorded in the decision store in one commit (the challenger's shadow records
beside them) and counted, each step once per batch rather than once per request. Only then is
each request answered, with JSON serialised once from plain dicts in the `Decision` layout:
building pydantic objects and BentoML's per-response schema work cost more than scoring a
decision. No answer without a committed record: a store that refuses is a 503 naming the cause.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.arrays import FloatArray
from credit_risk.decision_store import StoreUnavailableError, new_records, open_store
from credit_risk.decision_store.chain import process_writer_id
from credit_risk.decision_store.writer import DecisionRecorder
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.recourse import RecourseColumns
from credit_risk.schema import FEATURES, Application
from credit_risk.serving import metrics
from credit_risk.serving.coalesce import Coalescer
from credit_risk.serving.runner_client import (
    RunnerBusyError,
    RunnerClient,
    RunnerUnavailableError,
)
from credit_risk.serving.settings import Settings
from credit_risk.serving.shadow import WIDTH, Shadow
from credit_risk.serving.tuning import (
    BATCHES_IN_FLIGHT,
    REQUEST_TIMEOUT_S,
    RUNNER_DEADLINE_S,
    RUNNER_MAX_BATCH_SIZE,
)
from credit_risk.serving.workarounds.admission_gate import RETRY_AFTER_S

RUNNER_UNAVAILABLE: Final = (
    b'{"error":"the model runner is unavailable (restarting?); nothing was scored, retry shortly"}'
)
RUNNER_BUSY: Final = (
    b'{"error":"server busy: the model runner did not answer within %g s; nothing was scored, '
    b'retry shortly"}' % RUNNER_DEADLINE_S
)
RETRY: Final = ((b"retry-after", str(RETRY_AFTER_S).encode()),)


@dataclass(frozen=True)
class Answer:
    """A JSON answer, whichever route sends it."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self) -> Response:
        """As a Starlette response (BentoML's handlers; the scoring route sends the bytes)."""
        headers = {k.decode(): v.decode() for k, v in self.headers}
        return Response(self.body, self.status, headers, media_type="application/json")


class Classifier:
    """The API worker's side of a decision: everything but validation and the model itself."""

    def __init__(
        self,
        rule: DecisionRule,
        shadow: Shadow | None,
        runner: RunnerClient,
        recorder: DecisionRecorder,
        *,
        coalesce: bool,
    ) -> None:
        self.rule = rule
        self.shadow = shadow
        self.runner = runner
        self.recorder = recorder
        turns: Coalescer[Application, dict[str, Any]] = Coalescer(
            self.decide, max_items=RUNNER_MAX_BATCH_SIZE, in_flight=BATCHES_IN_FLIGHT
        )
        self._decide = turns.submit if coalesce else self.decide

    @classmethod
    def for_models(
        cls,
        champion: Any,
        challenger: Any | None,
        runner: RunnerClient,
        recorder: DecisionRecorder,
        *,
        coalesce: bool,
    ) -> Classifier:
        """Deciding by the champion's stored rule (BentoML model infos), the challenger's
        records kept in shadow."""
        rule = DecisionRule.from_model(str(champion.tag), dict(champion.metadata))
        shadow = (
            Shadow(str(challenger.tag), dict(challenger.metadata), rule.model_version)
            if challenger
            else None
        )
        return cls(rule, shadow, runner, recorder, coalesce=coalesce)

    @classmethod
    def serving(
        cls, champion: Any, challenger: Any | None, runner: RunnerClient, settings: Settings
    ) -> Classifier:
        """The API worker's classifier: its own writer into the configured decision store
        (errors counted by cause), coalescing as the settings say."""
        recorder = DecisionRecorder(
            open_store(settings.decision_store),
            process_writer_id(),
            on_failure=lambda cause: metrics.DECISION_STORE_ERRORS.labels(cause=cause).inc(),
        )
        coalesce = settings.batching and settings.coalescing
        return cls.for_models(champion, challenger, runner, recorder, coalesce=coalesce)

    async def answer(self, applicants: Sequence[Application], *, single: bool = False) -> Answer:
        """The JSON answer: one decision (`single`) or the list, in input order; 503 if the
        runner cannot be reached, did not answer in time, or the decision store cannot record
        (the message says which)."""
        try:
            decisions = await self._decide(applicants)
        except RunnerUnavailableError:
            return Answer(503, RUNNER_UNAVAILABLE, RETRY)
        except RunnerBusyError:
            return Answer(503, RUNNER_BUSY, RETRY)
        except StoreUnavailableError as exc:
            # nothing was recorded, so nothing may be answered: the decision is withheld
            body = {"error": store_unavailable(exc.cause), "cause": exc.cause}
            return Answer(503, to_json(body), RETRY)
        return Answer(200, to_json(decisions[0] if single else decisions))

    async def decide(self, applicants: Sequence[Application]) -> list[dict[str, Any]]:
        """Decisions in the `Decision` layout for one batch, committed to the store, then
        counted."""
        async with asyncio.timeout(REQUEST_TIMEOUT_S):  # one deadline per batch: a 504
            return await self._decide_batch(applicants)

    async def _decide_batch(self, applicants: Sequence[Application]) -> list[dict[str, Any]]:
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
                officer_ids=[a.officer_id for a in applicants],
            )
        )
        outcomes = Counter((d["decision"], d["risk_band"]) for d in decisions)
        for (decision, band), count in outcomes.items():
            metrics.DECISIONS.labels(decision, band, self.rule.model_version).inc(count)
        metrics.observe_all(metrics.PROBABILITY, out[:, 0])
        return decisions


def store_unavailable(cause: str) -> str:
    """The 503's message when the decision store refused the records."""
    return (
        f"the decision store cannot record decisions ({cause}); nothing was decided, retry shortly"
    )
