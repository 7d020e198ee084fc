"""The one contract: request and response payloads shared by training and serving.

Training data is mapped into this vocabulary and validated through `Applicant`, so a value the
API rejects can never have been trained on. `personal_status_and_sex` and `foreign_worker` are
deliberately absent: they are protected characteristics a lender may not score on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from credit_risk.policy import (
    BAND_FLOORS,
    COSTS,
    MAX_BATCH_APPLICANTS,
    MAX_REASON_CODES,
    RECOURSE_AMOUNT_STEP,
    SCALING,
    RiskBand,
)

CheckingAccount = Literal["below_0", "0_to_200", "200_or_more", "none"]
CreditHistory = Literal[
    "no_credits_or_all_paid",
    "all_paid_at_this_bank",
    "existing_paid_duly",
    "delayed_in_past",
    "critical_or_other_credits",
]
Purpose = Literal[
    "car_new",
    "car_used",
    "furniture_equipment",
    "radio_television",
    "domestic_appliances",
    "repairs",
    "education",
    "retraining",
    "business",
    "others",
]
Savings = Literal["below_100", "100_to_500", "500_to_1000", "1000_or_more", "unknown_or_none"]
Employment = Literal[
    "unemployed", "below_1_year", "1_to_4_years", "4_to_7_years", "7_years_or_more"
]
OtherDebtors = Literal["none", "co_applicant", "guarantor"]
Property = Literal["real_estate", "savings_or_life_insurance", "car_or_other", "unknown_or_none"]
OtherInstallmentPlans = Literal["bank", "stores", "none"]
Housing = Literal["rent", "own", "for_free"]
Job = Literal["unemployed_or_unskilled_non_resident", "unskilled_resident", "skilled", "management"]
Telephone = Literal["registered", "none"]


INSTALMENT_RATE_CLASSES: Final[dict[int, str]] = {
    1: "35 % or more",
    2: "25 % to under 35 %",
    3: "20 % to under 25 %",
    4: "under 20 %",
}
"""`installment_rate`'s four codes in words: the instalment's share of disposable income
(the data's code table, Grömping 2019; docs/api.md, "The two class fields")."""

RESIDENCE_CLASSES: Final[dict[int, str]] = {
    1: "under 1 year",
    2: "1 to under 4 years",
    3: "4 to under 7 years",
    4: "7 years or more",
}
"""`residence_since`'s four codes in words: time at the present address (same source)."""

CLASSES_KEY: Final = "x-classes"
"""JSON-schema key of a class field's codes in words, read by the form and the OpenAPI document."""


def class_words(classes: dict[int, str]) -> str:
    """A class field's codes in words, for its description: '1 = 35 % or more; 2 = ...'."""
    return "; ".join(f"{code} = {text}" for code, text in classes.items())


def class_key(classes: dict[int, str]) -> dict[str, str]:
    """A class field's codes in words as its JSON-schema extension (JSON keys are text)."""
    return {str(code): text for code, text in classes.items()}


_EXAMPLE: Final[dict[str, Any]] = {
    "checking_account": "0_to_200",
    "duration_months": 24,
    "credit_history": "existing_paid_duly",
    "purpose": "car_used",
    "credit_amount": 4500.0,
    "savings": "below_100",
    "employment_since": "1_to_4_years",
    "installment_rate": 3,
    "other_debtors": "none",
    "residence_since": 2,
    "property": "car_or_other",
    "age_years": 35,
    "other_installment_plans": "none",
    "housing": "own",
    "existing_credits": 1,
    "job": "skilled",
    "dependents": 1,
    "telephone": "none",
}
"""The documented example applicant (docs, the form, tests)."""


class Applicant(BaseModel):
    """One loan application, in the API's vocabulary (amounts in Deutsche Mark, as in the data)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={"example": _EXAMPLE},
    )

    checking_account: Annotated[
        CheckingAccount,
        Field(
            description="Balance of the applicant's current account in DM; 'none' if there is no "
            "current account. '200_or_more' includes salary assignments of at least a year.",
            examples=["0_to_200"],
        ),
    ]
    duration_months: Annotated[
        int,
        Field(ge=1, le=120, description="Loan term in months.", examples=[24]),
    ]
    credit_history: Annotated[
        CreditHistory,
        Field(
            description="Repayment record: no credits taken or all paid back; all credits at this "
            "bank paid back; existing credits paid duly so far; delays in the past; critical "
            "account or credits existing at other banks.",
            examples=["existing_paid_duly"],
        ),
    ]
    purpose: Annotated[Purpose, Field(description="What the loan is for.", examples=["car_used"])]
    credit_amount: Annotated[
        float,
        Field(
            gt=0,
            le=1_000_000,
            allow_inf_nan=False,
            description="Amount requested, in DM (the data set's currency).",
            examples=[4500.0],
        ),
    ]
    savings: Annotated[
        Savings,
        Field(
            description="Savings accounts and bonds, in DM; 'unknown_or_none' if none are known.",
            examples=["below_100"],
        ),
    ]
    employment_since: Annotated[
        Employment,
        Field(description="Time in present employment.", examples=["1_to_4_years"]),
    ]
    installment_rate: Annotated[
        int,
        Field(
            ge=1,
            le=4,
            description="The monthly instalment as a share of the applicant's disposable "
            f"income, as the data set's class: {class_words(INSTALMENT_RATE_CLASSES)}.",
            examples=[3],
            json_schema_extra={CLASSES_KEY: class_key(INSTALMENT_RATE_CLASSES)},
        ),
    ]
    other_debtors: Annotated[
        OtherDebtors,
        Field(description="Co-applicant or guarantor on the loan, if any.", examples=["none"]),
    ]
    residence_since: Annotated[
        int,
        Field(
            ge=1,
            le=4,
            description="How long the applicant has lived at the present address, as the data "
            f"set's class: {class_words(RESIDENCE_CLASSES)}.",
            examples=[2],
            json_schema_extra={CLASSES_KEY: class_key(RESIDENCE_CLASSES)},
        ),
    ]
    property: Annotated[
        Property,
        Field(
            description="Most valuable property: real estate; building-society savings or life "
            "insurance; car or other; unknown or none.",
            examples=["car_or_other"],
        ),
    ]
    age_years: Annotated[
        int, Field(ge=18, le=100, description="Applicant's age in years.", examples=[35])
    ]
    other_installment_plans: Annotated[
        OtherInstallmentPlans,
        Field(description="Instalment plans elsewhere (bank or stores).", examples=["none"]),
    ]
    housing: Annotated[Housing, Field(description="Housing situation.", examples=["own"])]
    existing_credits: Annotated[
        int,
        Field(
            ge=1,
            le=10,
            description="Number of credits at this bank, including this one.",
            examples=[1],
        ),
    ]
    job: Annotated[
        Job,
        Field(
            description="Occupation: unemployed or unskilled non-resident; unskilled resident; "
            "skilled employee or official; management, self-employed or highly qualified.",
            examples=["skilled"],
        ),
    ]
    dependents: Annotated[
        int,
        Field(
            ge=0,
            le=20,
            description="Number of people the applicant is liable to maintain.",
            examples=[1],
        ),
    ]
    telephone: Annotated[
        Telephone,
        Field(description="Telephone registered in the applicant's name.", examples=["none"]),
    ]

    @field_validator(
        "duration_months",
        "installment_rate",
        "residence_since",
        "age_years",
        "existing_credits",
        "dependents",
        mode="before",
    )
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        """JSON has one number type: 35.0 is the integer 35 (35.5, "35" and true stay refused)."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


APPLICATION_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,64}$"
"""The lender's own application reference: 1 to 64 of letters, digits and `. _ : -`."""

OFFICER_ID_PATTERN: Final = r"^[A-Za-z0-9._:@-]{1,64}$"
"""A loan officer's id at the lender: 1 to 64 of letters, digits and `. _ : - @`."""


class Application(Applicant):
    """What /classify takes: the applicant's fields, and optionally the lender's reference.

    `application_id` is not a model input: it is not in `FEATURES`, so the encoder and the
    schema hash never see it. It is echoed in the answer and kept with the decision record, and
    retrieval finds every decision made for it (a repeat is a re-decision). `officer_id`, who
    asked, is kept with the record too, and not echoed.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                **_EXAMPLE,
                "application_id": "loan-2026-000123",
                "officer_id": "officer.schmidt",
            }
        }
    )

    application_id: Annotated[
        str | None,
        Field(
            default=None,
            pattern=APPLICATION_ID_PATTERN,
            description="Optional: the lender's own reference for this application (1 to 64 "
            "characters of letters, digits and . _ : -). Not used for scoring; echoed in the "
            "answer and stored with the decision, so `GET /decisions?application_id=...` "
            "finds every decision made for it.",
            examples=["loan-2026-000123"],
        ),
    ] = None
    officer_id: Annotated[
        str | None,
        Field(
            default=None,
            pattern=OFFICER_ID_PATTERN,
            description="Optional: who asked for this decision (the loan officer's id at the "
            "lender, 1 to 64 characters of letters, digits and . _ : - @). Not used for scoring "
            "and not echoed in the answer; stored with the decision, so retrieval and exports "
            "show who acted.",
            examples=["officer.schmidt"],
        ),
    ] = None


FEATURES: Final[tuple[str, ...]] = tuple(Applicant.model_fields)
"""Model inputs, in schema order: the column order of every encoded array."""


def _categories(name: str) -> tuple[str, ...] | None:
    args = get_args(Applicant.model_fields[name].annotation)
    return tuple(args) if args and all(isinstance(a, str) for a in args) else None


CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    name: cats for name in FEATURES if (cats := _categories(name)) is not None
}
"""Allowed values per categorical feature, in a fixed order: a value's index is its code."""

NUMERIC_FEATURES: Final[tuple[str, ...]] = tuple(f for f in FEATURES if f not in CATEGORIES)
CATEGORICAL_FEATURES: Final[tuple[str, ...]] = tuple(f for f in FEATURES if f in CATEGORIES)


WORDING_KEYS: Final = frozenset({"title", "description", "examples", "example", CLASSES_KEY})
"""JSON-schema keys that only word the contract: the fingerprint leaves them out."""


def schema_hash() -> str:
    """Fingerprint of the applicant contract (names, types, bounds, vocabularies), stored with
    each model to refuse a mismatch; rewording a field's description does not change it."""
    canonical = json.dumps(_contract(Applicant.model_json_schema()), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()


SAME_CONTRACT_HASHES: Final = frozenset(
    {"af6365a215ceb7ff3b907645d316df351d833449fdd3eae6962fd9b4be973e91"}
)
"""Fingerprints stored by models trained for this very contract before the fingerprint left the
wording out (it hashed the whole JSON schema, descriptions included); they still load."""


def contract_hash(stored: str | None) -> str | None:
    """A model's stored fingerprint as this code's, when it names the same contract."""
    return schema_hash() if stored in SAME_CONTRACT_HASHES else stored


def _contract(node: Any) -> Any:
    """A JSON schema without its wording keys (a property named like one stays)."""
    if isinstance(node, list):
        return [_contract(item) for item in node]
    if not isinstance(node, dict):
        return node
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            kept[key] = {name: _contract(field) for name, field in value.items()}
        elif key not in WORDING_KEYS:
            kept[key] = _contract(value)
    return kept


class ReasonCode(BaseModel):
    """One principal reason for a decline, as a lender must disclose it."""

    model_config = ConfigDict(frozen=True)

    code: Annotated[str, Field(description="Stable code, e.g. 'RC01'.", examples=["RC01"])]
    feature: Annotated[str, Field(description="Applicant field behind this reason.")]
    description: Annotated[str, Field(description="The reason in plain words.")]
    points: Annotated[
        float,
        Field(
            description="Score points this field cost the applicant, against the best value "
            "of the same field (negative = pushed the score down).",
        ),
    ]


RecourseMethod = Literal["exact", "search"]
"""How a recourse was found: read off a scorecard's tables (the smallest change on the whole
grid) or by a bounded search of the grid with the model itself (credit_risk/recourse.py)."""


class Recourse(BaseModel):
    """What would turn a decline into an approval under the same model and policy: the smallest
    change to the two fields an applicant chooses, the amount and the term."""

    model_config = ConfigDict(frozen=True)

    found: Annotated[
        bool,
        Field(
            description="false when no lower amount and no shorter term within the allowed "
            "ranges would be approved (every other field as stated)."
        ),
    ]
    credit_amount: Annotated[
        float | None,
        Field(
            gt=0,
            description="Amount, in DM, that would be approved over `duration_months`: the "
            f"requested amount or a whole multiple of {RECOURSE_AMOUNT_STEP:g} DM below it; "
            "null when none was found.",
            examples=[3200.0],
        ),
    ]
    duration_months: Annotated[
        int | None,
        Field(
            ge=1,
            description="Loan term, in months, at which that amount would be approved: the "
            "requested term or a shorter one; null when none was found.",
            examples=[24],
        ),
    ]
    method: Annotated[
        RecourseMethod,
        Field(
            description="'exact': the smallest change on the whole grid, read off the "
            "scorecard's tables; 'search': the smallest change among a bounded set of grid "
            "points scored with the model (models that are not scorecards)."
        ),
    ]
    description: Annotated[
        str,
        Field(
            description="The recourse in plain words (`describe_recourse`).",
            examples=["An amount of 3,200 DM over 24 months would be approved."],
        ),
    ]

    @model_validator(mode="after")
    def _found_names_both(self) -> Recourse:
        """A found recourse names an amount and a term; none found names neither."""
        named = (self.credit_amount is not None, self.duration_months is not None)
        if named != (self.found, self.found):
            msg = "credit_amount and duration_months are given exactly when found is true"
            raise ValueError(msg)
        return self


def describe_recourse(credit_amount: float | None, duration_months: int | None) -> str:
    """The recourse in words, as the answer, the loan officer's form and the notice give it."""
    if credit_amount is None or duration_months is None:
        return "No lower amount or shorter term within the allowed ranges would be approved."
    amount = f"{credit_amount:,.0f}" if credit_amount.is_integer() else f"{credit_amount:,.2f}"
    term = f"{duration_months} month{'' if duration_months == 1 else 's'}"
    return f"An amount of {amount} DM over {term} would be approved."


class Decision(BaseModel):
    """The service's answer for one applicant."""

    model_config = ConfigDict(frozen=True)

    probability_of_default: Annotated[
        float, Field(ge=0, le=1, description="Predicted probability that the loan goes bad.")
    ]
    decision: Annotated[
        Literal["approve", "decline"],
        Field(description="'decline' when the probability of default exceeds the threshold."),
    ]
    threshold: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Probability-of-default cut-off of the served model, chosen to minimise "
            f"expected cost (bad approved = {COSTS.bad_approved:g}, "
            f"good declined = {COSTS.good_declined:g}).",
        ),
    ]
    score: Annotated[
        int,
        Field(description=f"Score points ({SCALING.describe()}); higher = lower risk."),
    ]
    risk_band: Annotated[
        RiskBand,
        Field(
            description="Risk band of `score` (as shown), lowest score per band: "
            + ", ".join(f"{b} {f:g}" for b, f in BAND_FLOORS.items())
            + f" ({next(iter(BAND_FLOORS))} = lowest risk)."
        ),
    ]
    reason_codes: Annotated[
        list[ReasonCode],
        Field(
            max_length=MAX_REASON_CODES,
            description=f"Up to {MAX_REASON_CODES} fields that pushed the score down most; "
            "empty on approval.",
        ),
    ]
    recourse: Annotated[
        Recourse | None,
        Field(
            description="Declines only: the smallest lower amount and/or shorter term that the "
            "same model and policy would approve, or that none would; null on approval."
        ),
    ]
    model_version: Annotated[str, Field(description="Tag of the model that decided.")]
    decision_id: Annotated[
        str,
        Field(
            description="Unique id of this decision in the decision log: keep it with the loan "
            "to join the outcome later (retraining, audit).",
            examples=["3f2b8c1e9a7d4e0f8b6a5c4d3e2f1a0b"],
        ),
    ]
    application_id: Annotated[
        str | None,
        Field(
            description="The lender's application reference sent with the request, or null.",
            examples=["loan-2026-000123"],
        ),
    ]


ApplicationBatch = Annotated[
    list[Application], Field(min_length=1, max_length=MAX_BATCH_APPLICANTS)
]
"""The body of /classify_batch: 1 to MAX_BATCH_APPLICANTS applications."""


class Decisions(RootModel[list[Decision]]):
    """The answer for a batch: one decision per applicant, in input order."""


def example_applicant() -> dict[str, Any]:
    """The documented example payload, for docs, the form and tests."""
    example = Applicant.model_config.get("json_schema_extra")
    assert isinstance(example, dict)
    value = example["example"]
    assert isinstance(value, dict)
    return dict(value)
