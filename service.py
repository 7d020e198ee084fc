"""BentoML services: the typed credit-risk API and the model runner it batches into.

    bentoml serve service:CreditRiskService

`CreditRiskService` (2 workers) validates applicants, has them scored, and answers decisions
with reasons; `CreditScorer` (the runner, its own process) scores adaptive micro-batches of the
shared code array (credit_risk/encoding.py). The logic lives in credit_risk/serving/; this file
is the design: the two services, their APIs and their configuration.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
from starlette.responses import Response

from credit_risk.decision_store import open_store
from credit_risk.schema import Application, ApplicationBatch, Decision, Decisions
from credit_risk.serving import startup
from credit_risk.serving.batch_scoring import BatchScoring
from credit_risk.serving.classify import Classifier
from credit_risk.serving.edge import EdgeService, install_edge, install_runner_edge
from credit_risk.serving.model_card import model_card
from credit_risk.serving.retrieval import DECISIONS_PATH
from credit_risk.serving.retrieval import create_app as decisions_app
from credit_risk.serving.runner_client import RunnerClient
from credit_risk.serving.settings import Settings
from credit_risk.serving.tuning import (
    REQUEST_TIMEOUT_S,
    RUNNER_CONNECTION_MAX_REQUESTS,
    RUNNER_MAX_BATCH_SIZE,
    RUNNER_MAX_LATENCY_MS,
)
from credit_risk.serving.ui import app as loan_officer_form
from credit_risk.serving.workarounds.model_reference import (
    refuse_unservable_model,
    served_model,
)

SETTINGS = Settings.from_env()
SERVED = SETTINGS.served()
CHAMPION_REF = served_model(SERVED.champion)
CHALLENGER_REF = served_model(SERVED.challenger, challenger=True) if SERVED.challenger else None
"""Both services reference both models, so `bentoml build` records them (the pin, else the
promotion state, else the newest model: credit_risk/promotion.py)."""


@bentoml.service(
    name="credit_scorer",
    workers=1,
    runner_connection={"max_requests": RUNNER_CONNECTION_MAX_REQUESTS},
    logging={"access": {"enabled": False}},
    service_class=EdgeService,  # BentoML's timeout, without its leak
)
class CreditScorer:
    """Runner: loads the models once, scores whole batches with the compiled scorer."""

    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF

    def __init__(self) -> None:
        self.scoring = BatchScoring.load(self.model_ref, self.challenger_ref, SETTINGS.drift_window)

    @bentoml.on_startup
    def _started(self) -> None:
        scoring = self.scoring
        startup.announce_models(SERVED, scoring.champion_tag, scoring.challenger_tag)
        startup.prepare_worker(SETTINGS)
        startup.prepare_runner()
        startup.freeze_startup_garbage()

    @bentoml.api(
        batchable=SETTINGS.batching,
        max_batch_size=RUNNER_MAX_BATCH_SIZE,
        max_latency_ms=RUNNER_MAX_LATENCY_MS,
    )
    async def score(self, codes: np.ndarray) -> np.ndarray:
        """Rows of the code array -> [P(default), excess log-odds per feature] per row, then
        the challenger's decided columns when one is scored in shadow."""
        return self.scoring.score(np.asarray(codes, dtype=np.float64))


@bentoml.asgi_app(loan_officer_form, path="/ui")
@bentoml.asgi_app(decisions_app(lambda: open_store(SETTINGS.decision_store)), path=DECISIONS_PATH)
@bentoml.service(
    name="credit_risk_service",
    workers=2,
    traffic={"timeout": REQUEST_TIMEOUT_S},
    # Every decision is in the decision store and every request in the metrics; BentoML's access
    # log line cost ~8 % of an API worker's CPU under load (py-spy). Turn it back on with
    # BENTOML_CONFIG: services.credit_risk_service.logging.access.enabled: true
    logging={"access": {"enabled": False}},
    service_class=EdgeService,  # the admission gate outside BentoML's stack (serving/edge.py)
)
class CreditRiskService:
    """The credit-risk API: one applicant or a batch in, decisions with reasons out."""

    runner = bentoml.depends(CreditScorer)
    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF

    def __init__(self) -> None:
        with refuse_unservable_model():
            champion = self.model_ref.info
            challenger = self.challenger_ref.info if self.challenger_ref else None
        runner = RunnerClient.for_dependency(type(self).runner)
        self.classifier = Classifier.serving(champion, challenger, runner, SETTINGS)
        self.card = model_card(champion, challenger, SERVED)

    async def __is_ready__(self) -> bool:
        """Ready while the decision store takes writes (BentoML's /readyz asks this)."""
        return await self.classifier.recorder.ready()

    @bentoml.on_deployment
    def _deployed() -> None:  # type: ignore[misc]  # a static hook, run by `bentoml serve`
        startup.prepare_supervisor()

    @bentoml.on_startup
    def _started(self) -> None:
        startup.prepare_worker(SETTINGS)
        startup.freeze_startup_garbage()

    # The endpoints document their answer as the pydantic types (`output_spec`: OpenAPI, typed
    # clients) but answer with JSON built by the classifier (credit_risk/serving/classify.py).

    @bentoml.api(output_spec=Decision)
    async def classify(self, applicant: Application, /) -> Response:
        """Score one applicant: decision, probability of default, score, band and reasons."""
        return (await self.classifier.answer([applicant], single=True)).response()

    @bentoml.api(output_spec=Decisions)
    async def classify_batch(self, applicants: ApplicationBatch, /) -> Response:
        """Score 1 to 1,000 applicants in one request; decisions come back in input order."""
        return (await self.classifier.answer(applicants)).response()

    @bentoml.api
    def model_card(self) -> dict[str, Any]:
        """What is being served: tag, creation time, metrics, threshold, scaling, features;
        the challenger scored in shadow beside it (or null), and where each choice came from."""
        return self.card


install_runner_edge(CreditScorer)
install_edge(CreditRiskService, SETTINGS)
