"""The blocking client: one connection pool reused by every call until `close()`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import httpx

from credit_risk.client.base import BaseClient
from credit_risk.client.errors import CreditRiskError
from credit_risk.client.wire import (
    CLASSIFY,
    CLASSIFY_BATCH,
    MODEL_CARD,
    READY,
    Answer,
    ApplicantLike,
    ModelCard,
    answer,
    applicant_body,
    batch_body,
    transport_error,
)
from credit_risk.schema import Decision, Decisions


class CreditRiskClient(BaseClient[httpx.Client]):
    """Score applicants with the credit-risk service from blocking code (options: `BaseClient`)."""

    _pool = httpx.Client

    def classify(self, applicant: ApplicantLike | None = None, /, **fields: Any) -> Decision:
        """Decide one applicant: an `Applicant`, a mapping of its fields, or the fields."""
        body = applicant_body(applicant, fields)
        return self._call(CLASSIFY, body, Decision)

    def classify_batch(self, applicants: Iterable[ApplicantLike]) -> Decisions:
        """Decide 1 to 1,000 applicants in one request; decisions come back in their order."""
        return self._call(CLASSIFY_BATCH, batch_body(applicants), Decisions)

    def model_card(self) -> ModelCard:
        """What the service serves: the model's tag, threshold and metrics, and any challenger."""
        return self._call(MODEL_CARD, None, ModelCard)

    def ready(self) -> bool:
        """Whether the service can score now (its `/readyz`); never raises for a down service."""
        try:
            return self._http.get(READY).status_code == httpx.codes.OK
        except httpx.TransportError:
            return False

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> CreditRiskClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, path: str, body: Any, model: type[Answer]) -> Answer:
        schedule = self.retry.start()
        while True:
            try:
                return self._send(path, body, model)
            except CreditRiskError as error:
                event = schedule.after(error)
                if event is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(event)
                time.sleep(event.delay_s)

    def _send(self, path: str, body: Any, model: type[Answer]) -> Answer:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.base_url) from exc
        return answer(response, model)
