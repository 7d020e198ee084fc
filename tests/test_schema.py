"""The applicant contract rejects every kind of nonsense and names the field it rejects."""

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from credit_risk.schema import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    CLASSES_KEY,
    FEATURES,
    INSTALMENT_RATE_CLASSES,
    NUMERIC_FEATURES,
    OFFICER_ID_PATTERN,
    RESIDENCE_CLASSES,
    Applicant,
    Application,
    _contract,
    example_applicant,
    schema_hash,
)


def _errors(**changes: Any) -> list[dict[str, Any]]:
    payload = {**example_applicant(), **changes}
    with pytest.raises(ValidationError) as info:
        Applicant.model_validate(payload)
    return [dict(e) for e in info.value.errors()]


def _fields(errors: list[dict[str, Any]]) -> set[str]:
    return {str(e["loc"][0]) for e in errors if e["loc"]}


def test_documented_example_is_valid() -> None:
    applicant = Applicant.model_validate(example_applicant())
    assert tuple(applicant.model_dump()) == FEATURES


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("credit_amount", -100.0, "greater_than"),
        ("credit_amount", 0.0, "greater_than"),
        ("credit_amount", float("nan"), "finite_number"),
        ("credit_amount", float("inf"), "finite_number"),
        ("age_years", 17, "greater_than_equal"),
        ("age_years", 130, "less_than_equal"),
        ("duration_months", 0, "greater_than_equal"),
        ("installment_rate", 5, "less_than_equal"),
        ("residence_since", 0, "greater_than_equal"),
        ("existing_credits", 0, "greater_than_equal"),
        ("dependents", -1, "greater_than_equal"),
    ],
)
def test_out_of_range_numbers_are_rejected(field: str, value: float, kind: str) -> None:
    errors = _errors(**{field: value})
    assert _fields(errors) == {field}
    assert errors[0]["type"] == kind


@pytest.mark.parametrize("field", CATEGORICAL_FEATURES)
def test_unknown_category_is_rejected(field: str) -> None:
    errors = _errors(**{field: "no_such_value"})
    assert _fields(errors) == {field}
    assert errors[0]["type"] == "literal_error"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("checking_account", "... < 0 DM"),  # the CSV's raw string, not the API vocabulary
        ("purpose", "Car_New"),
        ("housing", ""),
    ],
)
def test_raw_or_miscased_categories_are_rejected(field: str, value: str) -> None:
    assert _fields(_errors(**{field: value})) == {field}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_months", "24"),  # strict: no string-to-number coercion
        ("age_years", 35.5),
        ("installment_rate", True),
        ("credit_amount", "4500"),
        ("telephone", 1),
    ],
)
def test_wrong_types_are_rejected(field: str, value: Any) -> None:
    assert _fields(_errors(**{field: value})) == {field}


def test_missing_field_is_named() -> None:
    payload = example_applicant()
    del payload["savings"]
    with pytest.raises(ValidationError) as info:
        Applicant.model_validate(payload)
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("missing", ("savings",))]


@pytest.mark.parametrize("field", ["personal_status_and_sex", "foreign_worker", "unexpected"])
def test_extra_fields_are_forbidden(field: str) -> None:
    errors = _errors(**{field: "yes"})
    assert _fields(errors) == {field}
    assert errors[0]["type"] == "extra_forbidden"


def test_protected_characteristics_are_not_features() -> None:
    assert "personal_status_and_sex" not in FEATURES
    assert "foreign_worker" not in FEATURES


def test_feature_partition_and_vocabulary() -> None:
    assert set(CATEGORICAL_FEATURES) | set(NUMERIC_FEATURES) == set(FEATURES)
    assert not set(CATEGORICAL_FEATURES) & set(NUMERIC_FEATURES)
    assert CATEGORIES["checking_account"] == ("below_0", "0_to_200", "200_or_more", "none")
    for values in CATEGORIES.values():
        assert all(v == v.lower() and " " not in v for v in values)


def test_every_field_is_documented_for_openapi() -> None:
    schema = Applicant.model_json_schema()
    assert schema["additionalProperties"] is False
    for name in FEATURES:
        prop = schema["properties"][name]
        assert prop.get("description"), name
        assert prop.get("examples"), name


def test_schema_hash_is_a_stable_fingerprint() -> None:
    assert schema_hash() == schema_hash()
    assert len(schema_hash()) == 64
    int(schema_hash(), 16)


def test_the_fingerprint_ignores_wording_and_sees_the_contract() -> None:
    schema = Applicant.model_json_schema()
    reworded = copy.deepcopy(schema)
    reworded["properties"]["installment_rate"]["description"] = "reworded"
    reworded["properties"]["installment_rate"][CLASSES_KEY] = {"1": "other words"}
    assert _contract(reworded) == _contract(schema)
    for change in ({"maximum": 5}, {"type": "number"}):
        bound = copy.deepcopy(schema)
        bound["properties"]["installment_rate"].update(change)
        assert _contract(bound) != _contract(schema), change
    wider = copy.deepcopy(schema)
    wider["properties"]["housing"]["enum"].append("boat")
    assert _contract(wider) != _contract(schema)


@pytest.mark.parametrize(
    ("name", "classes"),
    [("installment_rate", INSTALMENT_RATE_CLASSES), ("residence_since", RESIDENCE_CLASSES)],
)
def test_the_class_fields_say_their_codes_in_words(name: str, classes: dict[int, str]) -> None:
    prop = Applicant.model_json_schema()["properties"][name]
    assert prop[CLASSES_KEY] == {str(code): text for code, text in classes.items()}
    assert (prop["minimum"], prop["maximum"]) == (min(classes), max(classes))
    for code, text in classes.items():
        assert f"{code} = {text}" in prop["description"]


def test_the_officer_is_optional_pattern_limited_and_not_a_model_input() -> None:
    example = example_applicant()
    assert Application.model_validate(example).officer_id is None
    assert (
        Application.model_validate({**example, "officer_id": "a.b@bank"}).officer_id == "a.b@bank"
    )
    for bad in ("", "x" * 65, "two words", "<script>"):
        with pytest.raises(ValidationError) as info:
            Application.model_validate({**example, "officer_id": bad})
        assert info.value.errors()[0]["loc"] == ("officer_id",)
    assert "officer_id" not in FEATURES
    assert Application.model_json_schema()["properties"]["officer_id"]["anyOf"][0]["pattern"] == (
        OFFICER_ID_PATTERN
    )
