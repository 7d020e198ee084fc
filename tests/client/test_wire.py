"""What the client sends, without a server: applicant bodies, and what importing it costs."""

from __future__ import annotations

import pytest

from credit_risk.client.errors import FieldError
from credit_risk.client.wire import applicant_body, batch_body, headers
from credit_risk.schema import Applicant, example_applicant
from tests.conftest import imported_modules

EXAMPLE = Applicant.model_validate(example_applicant())


def test_a_model_a_mapping_and_keywords_give_the_same_body() -> None:
    assert applicant_body(EXAMPLE, {}) == example_applicant()
    assert applicant_body(example_applicant(), {}) == example_applicant()
    assert applicant_body(None, example_applicant()) == example_applicant()


def test_a_mapping_is_sent_as_given_for_the_service_to_judge() -> None:
    odd = {**example_applicant(), "age_years": 12, "unknown": "x"}
    assert applicant_body(odd, {}) == odd


def test_a_batch_keeps_the_callers_order_and_refuses_a_lone_applicant() -> None:
    stronger = EXAMPLE.model_copy(update={"duration_months": 12})
    body = batch_body(iter([stronger, example_applicant()]))
    assert [a["duration_months"] for a in body] == [12, 24]
    for lone in (EXAMPLE, example_applicant(), "applicant"):
        with pytest.raises(TypeError, match="sequence of applicants"):
            batch_body(lone)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        batch_body([EXAMPLE, 3])  # type: ignore[list-item]


def test_the_token_is_sent_only_when_given() -> None:
    assert "Authorization" not in headers(None)
    assert headers("t0k")["Authorization"] == "Bearer t0k"
    assert headers(None)["User-Agent"].startswith("credit-risk-client/")


def test_a_field_error_is_named_as_the_service_names_it() -> None:
    assert FieldError(("age_years",), "too young").field == "age_years"
    assert FieldError((3, "housing"), "unknown").field == "3.housing"
    assert FieldError((), "empty").field == "body"


def test_importing_the_client_loads_no_server_and_no_model_code() -> None:
    loaded = imported_modules("import credit_risk.client")
    heavy = {"bentoml", "_bentoml_impl", "_bentoml_sdk", "sklearn", "pandas", "scipy"}
    heavy |= {"starlette", "uvicorn", "aiohttp", "prometheus_client", "joblib"}
    assert not {m.split(".")[0] for m in loaded} & heavy
    assert "httpx" in loaded
