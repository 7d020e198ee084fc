"""The columnar checks accept and refuse exactly what the API's pydantic contract does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from credit_risk.encoding import encode_applicants
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio.validation import check_types, code_array, validate
from credit_risk.schema import FEATURES, Applicant, example_applicant

MUTATIONS: list[tuple[str, Any]] = [
    ("credit_amount", -500.0),  # a negative amount
    ("credit_amount", 0.0),
    ("credit_amount", 1_000_000.0),
    ("credit_amount", 1_000_000.5),
    ("credit_amount", float("nan")),
    ("credit_amount", float("inf")),
    ("age_years", 17),
    ("age_years", 18),
    ("age_years", 100),
    ("age_years", 101),
    ("age_years", None),  # a null in a required field
    ("dependents", 0),
    ("dependents", -1),
    ("purpose", "holiday"),  # an unknown category
    ("purpose", "Car_New"),
    ("purpose", None),
    ("telephone", ""),
]


def rows_as_batch(records: list[dict[str, Any]], float_ints: bool = False) -> pa.RecordBatch:
    """Records as one batch; numbers as float64 when asked (a float column for int fields)."""
    columns = {}
    for name in FEATURES:
        values = [r[name] for r in records]
        numeric = name not in {"credit_amount"} and not isinstance(example_applicant()[name], str)
        kind = pa.float64() if (float_ints and numeric) else None
        columns[name] = pa.array(values, type=kind)
    return pa.RecordBatch.from_pydict(columns)


def api_accepts(record: dict[str, Any]) -> bool:
    try:
        Applicant.model_validate(record)
    except ValidationError:
        return False
    return True


def test_every_mutation_is_judged_as_the_api_judges_it() -> None:
    base = example_applicant()
    records = [base | {field: value} for field, value in MUTATIONS]
    checked = validate(rows_as_batch([base, *records]))
    expected = [not api_accepts(r) for r in [base, *records]]
    assert checked.bad.tolist() == expected


def test_problems_name_row_field_and_reason() -> None:
    base = example_applicant()
    batch = rows_as_batch([base, base | {"purpose": "holiday", "age_years": 12}, base])
    checked = validate(batch)
    p = checked.problems
    found = {(int(w[0]), f, r) for w, f, r in zip(p.positions, p.fields, p.reasons, strict=True)}
    assert (1, "age_years", "must be >= 18") in found
    assert any(f == "purpose" and r.startswith("unknown category") for _, f, r in found)
    assert checked.bad.tolist() == [False, True, False]


def test_whole_numbers_in_a_float_column_are_accepted_fractions_are_not() -> None:
    base = example_applicant()
    batch = rows_as_batch([base, base | {"age_years": 35.5}], float_ints=True)
    assert validate(batch).bad.tolist() == [False, True]


def test_text_numbers_are_parsed_and_garbage_is_quarantined() -> None:
    base = example_applicant()
    columns = {n: pa.array([str(base[n]), str(base[n])]) for n in FEATURES}
    columns["age_years"] = pa.array(["35", "thirty"])
    checked = validate(pa.RecordBatch.from_pydict(columns))
    assert checked.bad.tolist() == [False, True]
    assert "not a number" in checked.problems.reasons


def test_codes_equal_the_apis_encoding(applicants: list[dict[str, Any]]) -> None:
    checked = validate(rows_as_batch(applicants))
    assert not checked.bad.any()
    codes = code_array(checked.columns, ~checked.bad)
    expected = encode_applicants([Applicant.model_validate(r) for r in applicants])
    np.testing.assert_array_equal(codes, expected)


def test_a_column_of_the_wrong_type_is_refused() -> None:
    base = example_applicant()
    batch = rows_as_batch([base])
    schema = batch.schema.set(
        batch.schema.get_field_index("purpose"), pa.field("purpose", pa.int64())
    )
    with pytest.raises(RefusedInputError, match="'purpose' has type int64, expected text"):
        check_types(schema, "book.parquet")
    schema = batch.schema.set(
        batch.schema.get_field_index("age_years"), pa.field("age_years", pa.bool_())
    )
    with pytest.raises(RefusedInputError, match="'age_years' has type bool, expected numbers"):
        check_types(schema, "book.parquet")


def test_a_missing_column_is_refused() -> None:
    schema = rows_as_batch([example_applicant()]).schema.remove(0)
    with pytest.raises(RefusedInputError, match=r"missing column.*'checking_account'"):
        check_types(schema, "book.parquet")


def test_dictionary_columns_are_judged_like_plain_text() -> None:
    base = example_applicant()
    records = [base, base | {"purpose": "holiday"}, base | {"purpose": None}, base]
    batch = rows_as_batch(records)
    index = batch.schema.get_field_index("purpose")
    encoded = batch.set_column(index, "purpose", batch.column(index).dictionary_encode())
    plain, dictionary = validate(batch), validate(encoded)
    assert dictionary.bad.tolist() == [False, True, True, False]
    assert dictionary.bad.tolist() == plain.bad.tolist()
    np.testing.assert_array_equal(
        code_array(dictionary.columns, ~dictionary.bad), code_array(plain.columns, ~plain.bad)
    )
    assert dictionary.problems.reasons == plain.problems.reasons
