"""BentoML services: the typed credit-risk API and the model runner it batches into.

    bentoml serve service:CreditRiskService

`CreditRiskService` validates applicants, turns model output into decisions and logs them;
`CreditScorer` runs in its own worker process and scores adaptive micro-batches of the
shared code array (see credit_risk/encoding.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from typing import Annotated, Any

import aiohttp
import bentoml
import numpy as np
from pydantic import Field
from pydantic_core import to_json
from starlette.responses import Response

from credit_risk.arrays import FloatArray
from credit_risk.compiled import Scorer
from credit_risk.decision_store import StoreUnavailableError, new_records, open_store
from credit_risk.decision_store.chain import process_writer_id
from credit_risk.decision_store.writer import DecisionRecorder
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import (
    MODEL_ENV,
    ModelLoadError,
    RegistryError,
    ServingModel,
    load_serving_model,
)
from credit_risk.policy import MAX_BATCH_APPLICANTS, MAX_BODY_BYTES, ScoreScaling
from credit_risk.promotion import read_state
from credit_risk.schema import Application, Decision, Decisions
from credit_risk.serving import metrics
from credit_risk.serving.coalesce import Coalescer
from credit_risk.serving.connections import bound_open_connections
from credit_risk.serving.drift import DriftMonitor
from credit_risk.serving.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    JsonNotFoundMiddleware,
    RejectionCounterMiddleware,
)
from credit_risk.serving.retrieval import BarePathMiddleware
from credit_risk.serving.retrieval import create_app as decisions_app
from credit_risk.serving.settings import (
    BODY_READ_TIMEOUT_S,
    DRIFT_PUBLISH_INTERVAL_S,
    REQUEST_TIMEOUT_S,
    RUNNER_CALL_ATTEMPTS,
    RUNNER_DEADLINE_S,
    RUNNER_MAX_BATCH_SIZE,
    RUNNER_MAX_LATENCY_MS,
    RUNNER_RETRY_BACKOFF_S,
    Settings,
)
from credit_risk.serving.shadow import WIDTH, Shadow, ShadowScorer, check_same_schema
from credit_risk.serving.ui import app as loan_officer_form
from credit_risk.serving.workarounds.admission_gate import (
    RETRY_AFTER_S,
    Admission,
    BodyRead,
    service_class,
)
from credit_risk.serving.workarounds.json_body import JsonBodyMiddleware
from credit_risk.serving.workarounds.model_reference import (
    challenger_message,
    refuse_unservable_model,
    served_model,
)
from credit_risk.serving.workarounds.openapi_document import OpenAPIDocumentMiddleware
from credit_risk.serving.workarounds.validation_errors import (
    ErrorMessageMiddleware,
    install_client_error_log_filter,
)
from credit_risk.stability import signals_from_metadata

SETTINGS = Settings.from_env()
install_client_error_log_filter()
bound_open_connections(SETTINGS.max_connections)
logger = logging.getLogger(__name__)

CHAMPION_REF = served_model(SETTINGS.model_tag)
CHALLENGER_REF = (
    served_model(SETTINGS.challenger_tag, challenger=True) if SETTINGS.challenger_tag else None
)
"""Both services reference both models, so `bentoml build` records them; resolved at import,
from the pin, the promotion state or the newest model (credit_risk/promotion.py)."""


def _announce_models() -> None:
    """At start-up (by the runner, once): which models, and where each choice came from."""
    logger.setLevel(logging.INFO)  # BentoML's root logger lets warnings only through
    state = read_state()
    if SETTINGS.model_source.startswith("pinned") and state.champion:
        logger.warning(
            "%s=%s pins the champion: it overrides the promotion state (champion %s)",
            MODEL_ENV,
            SETTINGS.model_tag,
            state.champion,
        )
    logger.info(
        "champion %s (%s); challenger %s (%s)",
        SETTINGS.model_tag,
        SETTINGS.model_source,
        SETTINGS.challenger_tag,
        SETTINGS.challenger_source,
    )


def _freeze_startup_garbage() -> None:
    # Everything allocated at start-up (modules, model, tables) lives as long as the process;
    # moving it out of the cyclic GC's generations shortens the collector's pauses.
    gc.collect()
    gc.freeze()


@bentoml.service(
    name="credit_scorer",
    workers=1,
    runner_connection={"max_requests": 10_000},
    logging={"access": {"enabled": False}},
    service_class=service_class(),  # BentoML's timeout, without its leak
)
class CreditScorer:
    """Runner: loads the pipeline once, scores whole batches with the compiled scorer."""

    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF

    def __init__(self) -> None:
        with refuse_unservable_model():
            loaded = load_serving_model(str(self.model_ref.tag))
            challenger = _load_challenger(self.challenger_ref, loaded)
        meta = loaded.metadata
        self.model: Scorer = loaded.scorer
        self.shadow = (
            ShadowScorer(
                challenger.scorer,
                DecisionRule.from_model(challenger.tag, challenger.metadata),
                DecisionRule.from_model(loaded.tag, meta),
            )
            if challenger
            else None
        )
        _announce_models()
        self.scaling = ScoreScaling.from_metadata(meta["score_scaling"])
        self.drift = DriftMonitor(
            signals_from_metadata(meta["training_distribution"]), window=SETTINGS.drift_window
        )
        self._drift_publish_scheduled = False
        metrics.MODEL_INFO.labels(model_version=loaded.tag).set(1)
        _freeze_startup_garbage()

    @bentoml.api(
        batchable=SETTINGS.batching,
        max_batch_size=RUNNER_MAX_BATCH_SIZE,
        max_latency_ms=RUNNER_MAX_LATENCY_MS,
    )
    async def score(self, codes: np.ndarray) -> np.ndarray:
        """Rows of the code array -> [P(default), excess log-odds per feature] per row, then
        the challenger's decided columns when there is one and it scored (serving/shadow.py)."""
        start = time.perf_counter()
        codes = np.asarray(codes, dtype=np.float64)
        proba, excess = self.model.predict(codes)
        out = np.column_stack([proba, excess])
        assert len(out) == len(codes), "one result per input row"
        if self.shadow is not None:
            out = self.shadow.append(out, codes)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - start)
        metrics.BATCH_ROWS.observe(len(codes))
        self._observe_drift(codes, proba)
        return out

    def _observe_drift(self, codes: FloatArray, proba: FloatArray) -> None:
        self.drift.observe(codes, self.scaling.score(proba))
        if not self._drift_publish_scheduled:  # PSI over ~20 signals: at most once per interval
            self._drift_publish_scheduled = True
            asyncio.get_running_loop().call_later(DRIFT_PUBLISH_INTERVAL_S, self._publish_drift)

    def _publish_drift(self) -> None:
        self._drift_publish_scheduled = False
        metrics.DRIFT_WINDOW.set(min(self.drift.seen, self.drift.window))
        if self.drift.full:
            for signal, value in self.drift.psi().items():
                metrics.DRIFT_PSI.labels(signal=signal).set(value)


def _load_challenger(ref: Any, champion: ServingModel) -> ServingModel | None:
    """The challenger, scoring the same inputs as the champion; refused like the champion."""
    if ref is None:
        return None
    try:
        challenger = load_serving_model(str(ref.tag))
        check_same_schema(champion.metadata, challenger.metadata, challenger.tag)
    except RegistryError as exc:
        raise ModelLoadError(challenger_message(exc)) from None
    return challenger


ApplicantBatch = Annotated[
    list[Application],
    Field(min_length=1, max_length=MAX_BATCH_APPLICANTS),
]


API_PATHS = frozenset({"/classify", "/classify_batch", "/model_card"})
"""The routes that auth, limits and rejection counting apply to (probes and /metrics stay open)."""
RETRIEVAL_PATH = "/decisions"
"""Where decisions are found again (credit_risk/serving/retrieval.py), behind the same auth."""


@bentoml.asgi_app(loan_officer_form, path="/ui")
@bentoml.asgi_app(decisions_app(lambda: open_store(SETTINGS.decision_store)), path=RETRIEVAL_PATH)
@bentoml.service(
    name="credit_risk_service",
    workers=2,
    traffic={"timeout": REQUEST_TIMEOUT_S},
    # Every decision is in the decision store and every request in the metrics; BentoML's access
    # log line cost ~8 % of an API worker's CPU under load (py-spy). Turn it back on with
    # BENTOML_CONFIG: services.credit_risk_service.logging.access.enabled: true
    logging={"access": {"enabled": False}},
    # past CREDIT_RISK_MAX_IN_FLIGHT requests a worker answers 429 before BentoML's stack runs;
    # a request counts once its body has arrived, and a body late past the deadline gets 408
    service_class=service_class(
        Admission(
            API_PATHS,
            SETTINGS.max_in_flight,
            metrics.REJECTED.labels(reason="overload").inc,
            BodyRead(
                BODY_READ_TIMEOUT_S,
                MAX_BODY_BYTES,
                metrics.REJECTED.labels(reason="body_timeout").inc,
            ),
        )
    ),
)
class CreditRiskService:
    """The credit-risk API: one applicant or a batch in, decisions with reasons out."""

    runner = bentoml.depends(CreditScorer)
    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF

    def __init__(self) -> None:
        with refuse_unservable_model():
            stored = self.model_ref
            challenger = self.challenger_ref
        self.model_info = stored.info
        self.challenger_info = challenger.info if challenger else None
        self.policy = DecisionRule.from_model(str(stored.tag), dict(stored.info.metadata))
        self.shadow = (
            Shadow(str(challenger.tag), dict(challenger.info.metadata), self.policy.model_version)
            if challenger
            else None
        )
        metrics.MODEL_INFO.labels(model_version=str(stored.tag)).set(1)
        coalescer = Coalescer(self._runner_score, max_rows=RUNNER_MAX_BATCH_SIZE)
        coalesce = SETTINGS.batching and SETTINGS.coalescing
        self._score = coalescer.submit if coalesce else self._runner_score
        self.recorder = DecisionRecorder(
            open_store(SETTINGS.decision_store),
            process_writer_id(),
            on_failure=lambda cause: metrics.DECISION_STORE_ERRORS.labels(cause=cause).inc(),
        )
        _freeze_startup_garbage()

    async def __is_ready__(self) -> bool:
        """Ready while the decision store takes writes (BentoML's /readyz asks this)."""
        return await self.recorder.ready()

    async def _runner_score(self, codes: FloatArray) -> FloatArray:
        """Call the runner; scoring is pure, so a dropped connection is retried, and a runner
        that stays unreachable past the deadline is a clear 503, never a 500 or a long hold."""
        failure: Exception | None = None
        try:
            async with asyncio.timeout(RUNNER_DEADLINE_S):
                for attempt in range(RUNNER_CALL_ATTEMPTS):
                    try:
                        # looked up per call: the remote client learns its endpoints once connected
                        result: FloatArray = await self.runner.to_async.score(codes)
                        return result
                    except (
                        aiohttp.ClientConnectionError,  # dropped or refused connection
                        aiohttp.ClientPayloadError,  # runner died mid-answer
                        ConnectionError,
                    ) as exc:
                        failure = exc
                        await asyncio.sleep(RUNNER_RETRY_BACKOFF_S * attempt)
        except TimeoutError as exc:
            failure = exc
        raise RunnerUnavailableError from failure

    async def _decide(self, applicants: list[Application]) -> list[dict[str, Any]]:
        codes = encode_applicants(applicants)
        out: FloatArray = await self._score(codes)
        assert out.shape[0] == len(applicants), "runner returned one row per applicant"
        decisions = self.policy.records(out[:, 0], out[:, 1:WIDTH])
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
                policy_version=self.policy.policy_version,
            )
        )
        outcomes = Counter((d["decision"], d["risk_band"]) for d in decisions)
        for (decision, band), count in outcomes.items():
            metrics.DECISIONS.labels(decision=decision, risk_band=band).inc(count)
        for d in decisions:
            metrics.PROBABILITY.observe(d["probability_of_default"])
        return decisions

    # The endpoints document their answer as the pydantic types (`output_spec`: OpenAPI, typed
    # clients) but answer with JSON serialised once from plain dicts in the same layout:
    # building pydantic objects and BentoML's per-response schema work cost more than scoring
    # a decision.

    @bentoml.api(output_spec=Decision)
    async def classify(self, applicant: Application, /) -> Response:
        """Score one applicant: decision, probability of default, score, band and reasons."""
        try:
            decisions = await self._decide([applicant])
        except RunnerUnavailableError:
            return _runner_unavailable()
        except StoreUnavailableError as exc:
            return _store_unavailable(exc)
        return _json_response(decisions[0])

    @bentoml.api(output_spec=Decisions)
    async def classify_batch(self, applicants: ApplicantBatch, /) -> Response:
        """Score 1 to 1,000 applicants in one request; decisions come back in input order."""
        try:
            decisions = await self._decide(applicants)
        except RunnerUnavailableError:
            return _runner_unavailable()
        except StoreUnavailableError as exc:
            return _store_unavailable(exc)
        return _json_response(decisions)

    @bentoml.api
    def model_card(self) -> dict[str, Any]:
        """What is being served: tag, creation time, metrics, threshold, scaling, features;
        the challenger scored in shadow beside it (or null), and where each choice came from."""
        return {
            **_card(self.model_info),
            "served_from": SETTINGS.model_source,
            "challenger": _card(self.challenger_info) if self.challenger_info else None,
            "challenger_served_from": SETTINGS.challenger_source,
        }


def _card(info: Any) -> dict[str, Any]:
    return {
        "tag": str(info.tag),
        "created_at": info.creation_time.isoformat(),
        "labels": dict(info.labels),
        **dict(info.metadata),
    }


class RunnerUnavailableError(Exception):
    """The model runner could not be reached within the deadline; nothing was scored."""


def _runner_unavailable() -> Response:
    # our own 503: BentoML would replace the message of any 5xx it renders with a generic one
    return Response(
        to_json(
            {
                "error": "the model runner is unavailable (restarting?); nothing was scored, "
                "retry shortly"
            }
        ),
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _store_unavailable(exc: StoreUnavailableError) -> Response:
    # nothing was recorded, so nothing may be answered: the decision is withheld, not lost
    return Response(
        to_json(
            {
                "error": f"the decision store cannot record decisions ({exc.cause}); nothing "
                "was decided, retry shortly",
                "cause": exc.cause,
            }
        ),
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _json_response(content: Any) -> Response:
    return Response(to_json(content), media_type="application/json")


# Inside the admission gate and BentoML's own middleware; Starlette runs the first-added
# outermost: count, then explain, then refuse.
CreditRiskService.add_asgi_middleware(
    RejectionCounterMiddleware,
    paths=API_PATHS,
    count=lambda reason: metrics.REJECTED.labels(reason=reason).inc(),
)
CreditRiskService.add_asgi_middleware(ErrorMessageMiddleware)
CreditRiskService.add_asgi_middleware(JsonNotFoundMiddleware)
CreditRiskService.add_asgi_middleware(
    BearerAuthMiddleware, paths=API_PATHS, tokens=SETTINGS.api_tokens, prefixes=(RETRIEVAL_PATH,)
)
CreditRiskService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
# after the size limit: checking that the body is JSON buffers it
CreditRiskService.add_asgi_middleware(
    JsonBodyMiddleware, api_paths=API_PATHS, body_paths={"/classify", "/classify_batch"}
)
CreditRiskService.add_asgi_middleware(OpenAPIDocumentMiddleware, api_paths=API_PATHS)
CreditRiskService.add_asgi_middleware(BarePathMiddleware, path=RETRIEVAL_PATH)
