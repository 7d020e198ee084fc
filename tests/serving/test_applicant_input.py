"""A body's applicants, and the bounded 400 for bad ones: the errors of the first invalid row,
the same as validating everything lists for it, all counted and at most 50 listed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from credit_risk.policy import MAX_BATCH_APPLICANTS
from credit_risk.schema import Application, ApplicationBatch, example_applicant
from credit_risk.serving.applicant_input import (
    MAX_DETAIL,
    REPEATED_KEY_SEARCH_BYTES,
    STOPPED,
    InvalidBodyError,
    applicants,
    repeated_key,
)
from credit_risk.serving.workarounds.validation_errors import body_location
from load_tests.applicants import sample_applicants

WHOLE_BATCH = TypeAdapter(ApplicationBatch)
"""The reference: pydantic validating every row and listing every error."""
WHOLE_SINGLE = TypeAdapter(Application)
ANSWER_BOUND = 64_000
JUNK = ("wrong", -1, 3.5, 35.0, None, True, "35", [1], {"a": 1}, "")
CASES = settings(
    max_examples=200,
    deadline=None,  # a busy CI machine must not turn slowness into a failure
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _invalid(body: str, *, single: bool = False) -> dict[str, Any]:
    with pytest.raises(InvalidBodyError) as caught:
        applicants(body.encode(), single=single)
    answer = caught.value.answer
    assert len(json.dumps(answer)) < ANSWER_BOUND
    return answer


def _every_error(body: str, *, single: bool) -> list[dict[str, Any]] | None:
    try:
        (WHOLE_SINGLE if single else WHOLE_BATCH).validate_json(body)
    except ValidationError as exc:
        return [
            {"type": e["type"], "loc": body_location(list(e["loc"])), "msg": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
    return None


@st.composite
def _row(draw: st.DrawFn, seed: int) -> Any:
    row: dict[str, Any] = sample_applicants(1, seed=seed)[0]
    kind = draw(st.sampled_from(["valid", "junk", "missing", "unknown", "not an object"]))
    if kind == "junk":
        for field in draw(st.lists(st.sampled_from(sorted(row)), min_size=1, max_size=20)):
            row[field] = draw(st.sampled_from(JUNK))
    elif kind == "missing":
        for field in draw(st.lists(st.sampled_from(sorted(row)), min_size=1, max_size=5)):
            row.pop(field, None)
    elif kind == "unknown":
        for n in range(draw(st.integers(1, 3 * MAX_DETAIL))):
            row[f"unknown_{n}"] = n
    elif kind == "not an object":
        return draw(st.sampled_from(JUNK))
    return row


def _first_row(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first = min(e["loc"][0] for e in errors)
    return [e for e in errors if e["loc"][0] == first]


@given(rows=st.lists(st.integers(0, 10_000).flatmap(_row), min_size=1, max_size=40))
@CASES
def test_a_batch_gets_the_errors_of_its_first_invalid_row(rows: list[Any]) -> None:
    body = json.dumps(rows)
    every = _every_error(body, single=False)
    if every is None:
        assert len(applicants(body.encode(), single=False)) == len(rows)
        return
    answer = _invalid(body)
    first = _first_row(every)
    assert answer["detail"] == first[:MAX_DETAIL]
    assert answer["error_count"] == len(first)
    assert answer["error"].endswith(f"({STOPPED})")


@given(row=st.integers(0, 10_000).flatmap(_row))
@CASES
def test_one_applicant_gets_the_first_errors_and_all_of_their_count(row: Any) -> None:
    body = json.dumps(row)
    every = _every_error(body, single=True)
    if every is None:
        assert len(applicants(body.encode(), single=True)) == 1
        return
    answer = _invalid(body, single=True)
    assert answer["detail"] == every[:MAX_DETAIL]
    assert answer["error_count"] == len(every)
    assert STOPPED not in answer["error"]


def test_a_full_batch_with_every_field_wrong_is_answered_with_its_first_row() -> None:
    wrong = [dict.fromkeys(Application.model_fields, "?") for _ in range(MAX_BATCH_APPLICANTS)]
    answer = _invalid(json.dumps(wrong))
    assert answer["error_count"] == len(answer["detail"]) == len(Application.model_fields)
    assert {e["loc"][0] for e in answer["detail"]} == {0}, "a batch's errors are located by row"
    assert "url" not in answer["detail"][0], "no third-party links in an answer"


def test_a_bad_row_at_the_end_is_found_after_every_valid_one() -> None:
    rows = sample_applicants(MAX_BATCH_APPLICANTS, seed=5)
    rows[-1]["age_years"] = 17
    answer = _invalid(json.dumps(rows))
    assert answer["detail"][0]["loc"] == [MAX_BATCH_APPLICANTS - 1, "age_years"]
    assert answer["error_count"] == 1


@pytest.mark.parametrize(("single", "valid_before"), [(True, 0), (False, 0), (False, 3)])
def test_thousands_of_unknown_keys_are_counted_and_only_the_first_listed(
    single: bool, valid_before: int
) -> None:
    row = sample_applicants(1, seed=6)[0] | {f"k{n}": n for n in range(20_000)}
    row["age_years"] = 17
    body = json.dumps(row if single else [*sample_applicants(valid_before, seed=7), row])
    answer = _invalid(body, single=single)
    every = _every_error(body, single=single)
    assert every is not None
    assert answer["detail"] == every[:MAX_DETAIL]
    assert answer["detail"][0]["loc"][-1] == "age_years", "field errors come first"
    assert answer["error_count"] == len(every) == 20_001


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "List should have at least 1 item"),
        (json.dumps([example_applicant()] * 1001), "List should have at most 1000 items"),
        ('{"age_years": 35}', "Input should be a valid array"),
        ('[{"age_years": ', "Invalid JSON"),
    ],
)
def test_a_body_that_is_no_list_of_rows_is_named_as_the_body(body: str, message: str) -> None:
    answer = _invalid(body)
    assert answer["detail"][0]["loc"] == []
    assert message in answer["error"]
    assert STOPPED not in answer["error"]


def test_a_batch_too_long_is_first_refused_for_its_first_invalid_row() -> None:
    # pydantic, fail-fast, checks a list's length after its items (docs/api.md)
    answer = _invalid(json.dumps([{}] * (MAX_BATCH_APPLICANTS + 1)))
    assert answer["detail"][0]["loc"] == [0, "checking_account"]


def test_a_key_given_twice_is_named_first_in_any_but_a_large_invalid_body() -> None:
    applicant = sample_applicants(1, seed=1)[0]
    twice = json.dumps(applicant)[:-1] + f', "age_years": {applicant["age_years"]}}}'
    wrong = json.dumps(applicant)[:-1] + ', "age_years": 17}'  # valid but for its last value
    for body, single in (
        (twice, True),
        (f"[{twice}]", False),
        (wrong, True),
        (f"[{wrong}]", False),
    ):
        answer = _invalid(body, single=single)
        assert "duplicate key 'age_years'" in answer["error"], body
    rows = json.dumps(sample_applicants(100, seed=2))[1:]
    large = f"[{wrong}, {rows}"
    assert len(large) > REPEATED_KEY_SEARCH_BYTES
    assert _invalid(large)["detail"][0]["loc"] == [0, "age_years"], "the last value, as read"


# --- the quick check for repeated keys -----------------------------------------------------------


def _validated(body: str, single: bool) -> list[Any]:
    adapter = WHOLE_SINGLE if single else WHOLE_BATCH
    return [adapter.validate_json(body)] if single else adapter.validate_json(body)


def test_the_quick_check_passes_bodies_that_name_each_key_once() -> None:
    rows = sample_applicants(3, seed=2)
    rows[1]["application_id"] = "loan-1"
    body = json.dumps(rows)
    assert repeated_key(body.encode(), _validated(body, single=False)) is None


def test_a_repeated_optional_key_is_caught_although_counts_balance() -> None:
    # row 0 names application_id twice, row 1 not at all: two keys for two rows
    rows = sample_applicants(2, seed=3)
    first = json.dumps(rows[0])[:-1] + ', "application_id": "a", "application_id": "b"}'
    body = f"[{first}, {json.dumps(rows[1])}]"
    found = repeated_key(body.encode(), _validated(body, single=False))
    assert found is not None
    assert "duplicate key 'application_id'" in found["error"]


def test_a_value_that_looks_like_a_key_is_not_a_repeat() -> None:
    applicant = sample_applicants(1, seed=4)[0] | {"application_id": "housing"}
    body = json.dumps(applicant)
    assert repeated_key(body.encode(), _validated(body, single=True)) is None


def test_a_repeat_written_with_a_space_before_its_colon_is_caught() -> None:
    applicant = sample_applicants(1, seed=5)[0]
    body = json.dumps(applicant)[:-1] + f', "age_years" : {applicant["age_years"]}}}'
    found = repeated_key(body.encode(), _validated(body, single=True))
    assert found is not None
    assert "duplicate key 'age_years'" in found["error"]
