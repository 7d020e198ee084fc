"""Field-naming 400s and quiet client-error logs, in-process, and the canaries for why: BentoML's
400 names no field, prefixes a list body's locations with "root", and logs each at ERROR."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError
from starlette.testclient import TestClient

from credit_risk.serving.workarounds.validation_errors import (
    BENTOML_REQUEST_ERROR_LOGGER,
    MAX_ERRORS_IN_MESSAGE,
    ClientErrorLogFilter,
    ErrorMessageMiddleware,
    body_location,
    validation_message,
)
from tests.serving.asgi_calls import call, responding

BAD_BATCH = [{"count": 1, "label": "a"}, {"count": "many", "label": "b"}]


@pytest.fixture
def bentoml_error_log() -> Iterator[logging.Logger]:
    """BentoML's request-error logger with our filter off, as upstream leaves it."""
    logger = logging.getLogger(BENTOML_REQUEST_ERROR_LOGGER)
    ours = [f for f in logger.filters if isinstance(f, ClientErrorLogFilter)]
    for f in ours:
        logger.removeFilter(f)
    yield logger
    for f in ours:
        logger.addFilter(f)


# --- canaries ----------------------------------------------------------------------------------


def test_bentomls_400_still_names_no_field(upstream: TestClient) -> None:
    r = upstream.post("/one", json={"count": "many"})
    assert r.status_code == 400
    error = r.json()["error"]
    changed = (
        f"BentoML's 400 message changed ({error!r}): revisit ErrorMessageMiddleware in "
        "credit_risk/serving/workarounds/validation_errors.py"
    )
    assert "validation error for" in error, changed
    assert "count" not in error, changed


def test_bentoml_still_prefixes_list_body_locations_with_root(upstream: TestClient) -> None:
    r = upstream.post("/many", json=BAD_BATCH)
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"] == ["root", 1, "count"], (
        f"BentoML's error locations changed ({r.json()['detail']}): revisit body_location in "
        "credit_risk/serving/workarounds/validation_errors.py"
    )


def test_bentoml_still_logs_a_clients_bad_input_as_a_server_error(
    upstream: TestClient, bentoml_error_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=bentoml_error_log.name):
        assert upstream.post("/one", json={"count": "many"}).status_code == 400
    (record,) = [r for r in caplog.records if r.name == bentoml_error_log.name]
    demote = (
        "BentoML no longer logs invalid input as an ERROR with a traceback: "
        "ClientErrorLogFilter (credit_risk/serving/workarounds/validation_errors.py) may go"
    )
    assert record.levelno == logging.ERROR, demote
    assert record.exc_info, demote
    assert isinstance(record.exc_info[1], ValidationError), demote


# --- the message and the locations -------------------------------------------------------------


def test_a_location_is_the_path_inside_the_body() -> None:
    assert body_location(["age_years"]) == ["age_years"]
    assert body_location(["root", 1, "housing"]) == [1, "housing"]
    assert body_location(["root"]) == []
    assert body_location([]) == []


def test_the_message_names_each_field_then_counts_the_rest() -> None:
    detail = [{"loc": [i, "housing"], "msg": "bad"} for i in range(MAX_ERRORS_IN_MESSAGE + 2)]
    message = validation_message([{"loc": [], "msg": "Input should be an object"}, *detail])
    assert message.startswith("invalid input: body: Input should be an object; 0.housing: bad")
    assert message.endswith(f"; and {len(detail) + 1 - MAX_ERRORS_IN_MESSAGE} more")


def test_bentomls_400_is_rewritten_naming_the_field_at_its_body_location(
    upstream: TestClient,
) -> None:
    original = upstream.post("/many", json=BAD_BATCH).content
    app = ErrorMessageMiddleware(responding(400, original, b"application/json"))
    sent = call(app)
    assert sent.status == 400
    body = sent.json()
    assert [d["loc"] for d in body["detail"]] == [[1, "count"]]
    assert body["error"].startswith("invalid input: 1.count: Input should be a valid integer")
    assert {k: v for k, v in body["detail"][0].items() if k != "loc"} == {
        k: v for k, v in json.loads(original)["detail"][0].items() if k != "loc"
    }
    assert sent.headers[b"content-length"] == str(len(sent.body)).encode()


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b'{"detail": [{"loc": ["root"]}]}'), (400, b"not json"), (400, b'{"error": "x"}')],
)
def test_other_answers_pass_untouched(status: int, body: bytes) -> None:
    sent = call(ErrorMessageMiddleware(responding(status, body, b"application/json")))
    assert (sent.status, sent.body) == (status, body)


# --- the log filter ----------------------------------------------------------------------------


class _Item(BaseModel):
    count: int


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        BENTOML_REQUEST_ERROR_LOGGER,
        logging.ERROR,
        __file__,
        1,
        "Exception on %s [%s]",
        ("/classify", "POST"),
        (type(exc), exc, None),
    )


def test_invalid_input_is_logged_as_one_info_line() -> None:
    with pytest.raises(ValidationError) as caught:
        _Item.model_validate({"count": "many"})
    record = _record(caught.value)
    assert ClientErrorLogFilter().filter(record)
    assert (record.levelno, record.levelname) == (logging.INFO, "INFO")
    assert record.getMessage() == "/classify [POST]: rejected invalid input (1 errors)"
    assert record.exc_info is None


def test_real_server_errors_keep_their_level_and_traceback() -> None:
    record = _record(RuntimeError("boom"))
    assert ClientErrorLogFilter().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
