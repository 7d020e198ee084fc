"""Load the German Credit CSV, map its raw strings to the API vocabulary, validate every row."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError

from credit_risk.schema import CATEGORIES, FEATURES, Applicant

DEFAULT_DATA_PATH: Final = Path(__file__).resolve().parents[2] / "data" / "german_credit.csv"
DATA_SHA256: Final = "2c0bae00275c028fc853a1ea72cc7a68002c3f6876c41300c5c948711540c8c6"
"""sha256 of the shipped copy (data/PROVENANCE.md); any other file is loaded only on request."""

TARGET_COLUMN: Final = "creditability"
TARGET_BAD: Final = "bad"
TARGET_VALUES: Final = frozenset({"good", "bad"})
PROTECTED_COLUMNS: Final = ("personal_status_and_sex", "foreign_worker")

# raw CSV column -> (API field, raw value -> API value or None for numeric columns)
COLUMN_MAP: Final[dict[str, tuple[str, dict[str, str] | None]]] = {
    "status_of_existing_checking_account": (
        "checking_account",
        {
            "... < 0 DM": "below_0",
            "0 <= ... < 200 DM": "0_to_200",
            "... >= 200 DM / salary assignments for at least 1 year": "200_or_more",
            "no checking account": "none",
        },
    ),
    "duration_in_month": ("duration_months", None),
    "credit_history": (
        "credit_history",
        {
            "no credits taken/ all credits paid back duly": "no_credits_or_all_paid",
            "all credits at this bank paid back duly": "all_paid_at_this_bank",
            "existing credits paid back duly till now": "existing_paid_duly",
            "delay in paying off in the past": "delayed_in_past",
            "critical account/ other credits existing (not at this bank)": (
                "critical_or_other_credits"
            ),
        },
    ),
    "purpose": (
        "purpose",
        {
            "car (new)": "car_new",
            "car (used)": "car_used",
            "furniture/equipment": "furniture_equipment",
            "radio/television": "radio_television",
            "domestic appliances": "domestic_appliances",
            "repairs": "repairs",
            "education": "education",
            "retraining": "retraining",
            "business": "business",
            "others": "others",
        },
    ),
    "credit_amount": ("credit_amount", None),
    "savings_account_and_bonds": (
        "savings",
        {
            "... < 100 DM": "below_100",
            "100 <= ... < 500 DM": "100_to_500",
            "500 <= ... < 1000 DM": "500_to_1000",
            "... >= 1000 DM": "1000_or_more",
            "unknown/ no savings account": "unknown_or_none",
        },
    ),
    "present_employment_since": (
        "employment_since",
        {
            "unemployed": "unemployed",
            "... < 1 year": "below_1_year",
            "1 <= ... < 4 years": "1_to_4_years",
            "4 <= ... < 7 years": "4_to_7_years",
            "... >= 7 years": "7_years_or_more",
        },
    ),
    "installment_rate_in_percentage_of_disposable_income": ("installment_rate", None),
    "other_debtors_or_guarantors": (
        "other_debtors",
        {"none": "none", "co-applicant": "co_applicant", "guarantor": "guarantor"},
    ),
    "present_residence_since": ("residence_since", None),
    "property": (
        "property",
        {
            "real estate": "real_estate",
            "building society savings agreement/ life insurance": "savings_or_life_insurance",
            "car or other, not in attribute Savings account/bonds": "car_or_other",
            "unknown / no property": "unknown_or_none",
        },
    ),
    "age_in_years": ("age_years", None),
    "other_installment_plans": (
        "other_installment_plans",
        {"bank": "bank", "stores": "stores", "none": "none"},
    ),
    "housing": ("housing", {"rent": "rent", "own": "own", "for free": "for_free"}),
    "number_of_existing_credits_at_this_bank": ("existing_credits", None),
    "job": (
        "job",
        {
            "unemployed/ unskilled - non-resident": "unemployed_or_unskilled_non_resident",
            "unskilled - resident": "unskilled_resident",
            "skilled employee / official": "skilled",
            "management/ self-employed/ highly qualified employee/ officer": "management",
        },
    ),
    "number_of_people_being_liable_to_provide_maintenance_for": ("dependents", None),
    "telephone": (
        "telephone",
        {"yes, registered under the customers name": "registered", "none": "none"},
    ),
}


class DataError(ValueError):
    """A data file that cannot be trained on; the message names file, row and column."""


@dataclass(frozen=True)
class Dataset:
    """Applicants in API vocabulary (one column per schema field) and the target (1 = bad)."""

    X: pd.DataFrame
    y: npt.NDArray[np.int_]
    sha256: str
    path: Path


def _raw_value(raw: str, column: str, mapping: dict[str, str] | None, where: str) -> str | int:
    if mapping is not None:
        if raw not in mapping:
            allowed = ", ".join(repr(v) for v in mapping)
            msg = (
                f"{where}, column {column!r}: unknown category {raw!r} (expected one of {allowed})"
            )
            raise DataError(msg)
        return mapping[raw]
    try:
        number = float(raw)
    except ValueError:
        msg = f"{where}, column {column!r}: {raw!r} is not a number"
        raise DataError(msg) from None
    return int(number) if number.is_integer() else number  # type: ignore[return-value]


def load_dataset(path: Path = DEFAULT_DATA_PATH, *, verify_sha256: bool | None = None) -> Dataset:
    """Read, map and validate the CSV; the shipped file must match its recorded sha256.

    `verify_sha256` defaults to True for the shipped file and False for any other path (a user's
    own extract of the same layout).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: no such file"
        raise DataError(msg)
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if verify_sha256 is None:
        verify_sha256 = path.resolve() == DEFAULT_DATA_PATH
    if verify_sha256 and digest != DATA_SHA256:
        msg = f"{path}: sha256 {digest} does not match the recorded {DATA_SHA256}"
        raise DataError(msg)

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in (*COLUMN_MAP, TARGET_COLUMN) if c not in header]
        if missing:
            msg = f"{path}, row 1 (header): missing column(s) {', '.join(map(repr, missing))}"
            raise DataError(msg)
        records: list[dict[str, str | int]] = []
        targets: list[int] = []
        for line_no, row in enumerate(reader, start=2):
            where = f"{path}, row {line_no}"
            record = {
                field: _raw_value(row[column] or "", column, mapping, where)
                for column, (field, mapping) in COLUMN_MAP.items()
            }
            try:
                Applicant.model_validate(record, strict=False)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = str(err["loc"][0]) if err["loc"] else "?"
                column = next(c for c, (f, _) in COLUMN_MAP.items() if f == field)
                msg = f"{where}, column {column!r}: {err['msg']}"
                raise DataError(msg) from None
            target = row[TARGET_COLUMN]
            if target not in TARGET_VALUES:
                msg = f"{where}, column {TARGET_COLUMN!r}: {target!r} is not 'good' or 'bad'"
                raise DataError(msg)
            records.append(record)
            targets.append(int(target == TARGET_BAD))

    if not records:
        msg = f"{path}: no data rows"
        raise DataError(msg)
    frame = pd.DataFrame.from_records(records, columns=list(FEATURES))
    for name, cats in CATEGORIES.items():
        frame[name] = pd.Categorical(frame[name], categories=list(cats))
    return Dataset(X=frame, y=np.asarray(targets, dtype=np.int_), sha256=digest, path=path)


def applicant_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as API payloads (JSON-ready, ints where the schema wants ints): for tests and load."""
    int_fields = {f for f in FEATURES if Applicant.model_fields[f].annotation is int}
    records: list[dict[str, Any]] = []
    for row in frame.itertuples(index=False):
        record: dict[str, Any] = {}
        for name, value in zip(FEATURES, row, strict=True):
            if name in CATEGORIES:
                record[name] = str(value)
            elif name in int_fields:
                record[name] = int(value)
            else:
                record[name] = float(value)
        records.append(record)
    return records


def protected_attributes(path: Path = DEFAULT_DATA_PATH) -> pd.DataFrame:
    """The protected columns, row for row with `load_dataset`: for fairness reporting only.

    They never reach a model: `load_dataset` leaves them out. Sex follows from
    `personal_status_and_sex` (its part before " : ").
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PROTECTED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            msg = f"{path}, row 1 (header): missing column(s) {', '.join(map(repr, missing))}"
            raise DataError(msg)
        rows = [[row[c] for c in PROTECTED_COLUMNS] for row in reader]
    frame = pd.DataFrame(rows, columns=list(PROTECTED_COLUMNS))
    frame["sex"] = frame["personal_status_and_sex"].str.split(" : ").str[0].str.strip()
    return frame
