"""The blocking client against a real `bentoml serve`: every input form, every refusal, the
retries of 429 and 503 after the server's Retry-After, and its bounds."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
import pytest

from credit_risk.client import (
    AuthError,
    CreditRiskClient,
    InvalidApplicantError,
    NoAnswerError,
    RetryEvent,
    RetryPolicy,
    ServiceBusyError,
    ServiceUnavailableError,
    ServiceUnreachableError,
)
from credit_risk.schema import Applicant, Decision, Decisions, example_applicant
from credit_risk.serving.workarounds.admission_gate import RETRY_AFTER_S
from tests.client.conftest import TOKEN, runner_suspended, slot_held, wait_until_busy
from tests.conftest import Server, free_port

pytestmark = pytest.mark.integration

EXAMPLE = Applicant.model_validate(example_applicant())
STRONGER = EXAMPLE.model_copy(
    update={"checking_account": "none", "duration_months": 12, "credit_amount": 2000.0}
)


def _same(a: Decision, b: Decision) -> bool:
    """The same decision for the same applicant (each has its own decision_id)."""
    ignore = {"decision_id"}
    return a.model_dump(exclude=ignore) == b.model_dump(exclude=ignore)


# --- answers -------------------------------------------------------------------------------------


def test_an_applicant_model_a_dict_and_keywords_get_the_same_decision(server: Server) -> None:
    with CreditRiskClient(server.url) as client:
        from_model = client.classify(EXAMPLE)
        from_dict = client.classify(example_applicant())
        from_keywords = client.classify(**example_applicant())
    assert isinstance(from_model, Decision)
    assert from_model.decision == "decline"
    assert from_model.reason_codes
    assert _same(from_model, from_dict)
    assert _same(from_model, from_keywords)
    assert len({from_model.decision_id, from_dict.decision_id, from_keywords.decision_id}) == 3


def test_a_batch_of_models_and_dicts_comes_back_in_order(server: Server) -> None:
    with CreditRiskClient(server.url) as client:
        batch = client.classify_batch([EXAMPLE, STRONGER.model_dump(), EXAMPLE])
        alone = [client.classify(EXAMPLE), client.classify(STRONGER)]
    assert isinstance(batch, Decisions)
    assert len(batch.root) == 3
    assert _same(batch.root[0], alone[0])
    assert _same(batch.root[1], alone[1])
    assert _same(batch.root[2], alone[0])
    assert batch.root[1].score > batch.root[0].score


def test_the_model_card_names_the_served_model(server: Server, model_tag: str) -> None:
    with CreditRiskClient(server.url) as client:
        card = client.model_card()
        decision = client.classify(EXAMPLE)
        assert client.ready()
    assert card.tag == model_tag == decision.model_version
    assert card.threshold == decision.threshold
    assert card.served_from == "pinned by CREDIT_RISK_MODEL"
    assert card.challenger is None
    assert card.model_extra is not None
    assert "features" in card.model_extra


def test_calls_reuse_one_connection(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])

    def open_to_server() -> int:
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )

    before = open_to_server()
    with CreditRiskClient(server.url) as client:
        for _ in range(5):
            client.classify(EXAMPLE)
        client.classify_batch([EXAMPLE, STRONGER])
        assert open_to_server() - before == 1
    assert open_to_server() == before


# --- refusals ------------------------------------------------------------------------------------


def test_an_invalid_applicant_names_each_field(server: Server) -> None:
    bad = {**example_applicant(), "age_years": 12, "housing": "castle"}
    bad.pop("savings")
    with CreditRiskClient(server.url) as client, pytest.raises(InvalidApplicantError) as caught:
        client.classify(bad)
    error = caught.value
    assert error.status == 400
    assert set(error.fields) == {"age_years", "housing", "savings"}
    assert "age_years" in error.message
    assert "age_years" in str(error)
    by_field = {e.field: e for e in error.errors}
    assert by_field["savings"].msg == "Field required"
    assert by_field["age_years"].loc == ("age_years",)


def test_an_invalid_applicant_in_a_batch_is_named_by_its_index(server: Server) -> None:
    with CreditRiskClient(server.url) as client, pytest.raises(InvalidApplicantError) as caught:
        client.classify_batch([EXAMPLE, {**example_applicant(), "housing": "castle"}])
    assert caught.value.fields == ("1.housing",)
    assert caught.value.errors[0].loc == (1, "housing")


def test_an_empty_batch_is_refused_for_the_body(server: Server) -> None:
    with CreditRiskClient(server.url) as client, pytest.raises(InvalidApplicantError) as caught:
        client.classify_batch([])
    assert caught.value.fields == ("body",)


def test_arguments_that_are_no_applicant_are_refused_before_sending(server: Server) -> None:
    with CreditRiskClient(server.url) as client:
        with pytest.raises(TypeError, match="not both"):
            client.classify(EXAMPLE, age_years=40)
        with pytest.raises(TypeError, match="no applicant"):
            client.classify()
        with pytest.raises(TypeError, match="sequence of applicants"):
            client.classify_batch(EXAMPLE)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not list"):
            client.classify([example_applicant()])  # type: ignore[arg-type]


def test_without_the_token_the_client_raises_auth_error(guarded: Server) -> None:
    events: list[RetryEvent] = []
    for token in (None, "wrong"):
        with CreditRiskClient(guarded.url, token=token, on_retry=events.append) as client:
            with pytest.raises(AuthError) as caught:
                client.classify(EXAMPLE)
            assert caught.value.status == 401
            assert caught.value.message == "missing or invalid bearer token"
    assert not events, "a 401 is not retried"
    with CreditRiskClient(guarded.url, token=TOKEN) as client:
        assert client.classify(EXAMPLE).decision == "decline"


def test_no_connection_is_retried_then_raised() -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=3, backoff_s=0.01)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with CreditRiskClient(url, retry=policy, on_retry=events.append) as client:
        with pytest.raises(ServiceUnreachableError) as caught:
            client.classify(EXAMPLE)
        assert not client.ready()
    assert caught.value.status is None
    assert [e.attempt for e in events] == [1, 2]
    assert all(e.status is None and e.retry_after_s is None for e in events)


# --- retries on the real 429 and 503 -------------------------------------------------------------


class Retries:
    """An on_retry hook: records each retry with when it was heard, then runs `then`."""

    def __init__(self, *then: Callable[[], None]) -> None:
        self.heard: list[tuple[RetryEvent, float]] = []
        self.then = then

    def __call__(self, event: RetryEvent) -> None:
        self.heard.append((event, time.monotonic()))
        for action in self.then:
            action()


def test_a_429_is_retried_after_its_retry_after(guarded: Server) -> None:
    for _ in range(5):  # the holder may finish between the probe and the call: try again
        with runner_suspended(guarded) as resume, slot_held(guarded) as release:
            retries = Retries(release, resume)
            with CreditRiskClient(guarded.url, token=TOKEN, on_retry=retries) as client:
                wait_until_busy(guarded)
                decision = client.classify(EXAMPLE)
                answered = time.monotonic()
        if retries.heard and retries.heard[0][0].status == 429:
            break
    first, heard = retries.heard[0]
    assert first.status == 429
    assert isinstance(first.error, ServiceBusyError)
    assert first.retry_after_s == RETRY_AFTER_S
    for event, _ in retries.heard:
        assert event.delay_s >= (event.retry_after_s or 0)
    assert answered - heard >= first.delay_s, "the client sent again before Retry-After"
    assert decision.decision == "decline"


def test_a_503_from_a_suspended_runner_is_retried(guarded: Server) -> None:
    with runner_suspended(guarded) as resume:
        retries = Retries(resume)
        with CreditRiskClient(guarded.url, token=TOKEN, on_retry=retries) as client:
            decision = client.classify(EXAMPLE)
    first, _ = retries.heard[0]
    assert first.status == 503
    assert isinstance(first.error, ServiceUnavailableError)
    assert first.retry_after_s == RETRY_AFTER_S
    assert "runner is unavailable" in first.error.message
    assert decision.decision == "decline"


def test_a_wait_past_the_time_budget_is_not_started(guarded: Server) -> None:
    events: list[RetryEvent] = []
    refused: ServiceBusyError | None = None
    policy = RetryPolicy(max_total_s=RETRY_AFTER_S / 2)
    with (
        runner_suspended(guarded),
        slot_held(guarded),
        CreditRiskClient(guarded.url, token=TOKEN, retry=policy, on_retry=events.append) as client,
    ):
        for _ in range(10):  # admitted instead, it waits out the runner deadline: a 503
            wait_until_busy(guarded)
            try:
                client.classify(EXAMPLE)
            except ServiceBusyError as busy:
                refused = busy
                break
            except ServiceUnavailableError:
                continue
    assert refused is not None, "never refused with 429"
    assert refused.retry_after_s == RETRY_AFTER_S
    assert not events


def test_tries_are_bounded(guarded: Server) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=2)
    with (
        runner_suspended(guarded),
        slot_held(guarded),
        CreditRiskClient(guarded.url, token=TOKEN, retry=policy, on_retry=events.append) as client,
    ):
        wait_until_busy(guarded)
        with pytest.raises((ServiceBusyError, ServiceUnavailableError)):
            client.classify(EXAMPLE)
    assert len(events) == 1


def test_a_request_without_an_answer_in_time_is_not_retried(guarded: Server) -> None:
    events: list[RetryEvent] = []
    with (
        runner_suspended(guarded),
        CreditRiskClient(
            guarded.url, token=TOKEN, read_timeout_s=0.5, on_retry=events.append
        ) as client,
        pytest.raises(NoAnswerError) as caught,
    ):
        client.classify(EXAMPLE)
    assert caught.value.status is None
    assert "ReadTimeout" in str(caught.value)
    assert not events
