"""The one contract: request and response payloads shared by training and serving.

Training data is mapped into this vocabulary and validated through `Applicant`, so a value the
API rejects can never have been trained on. `personal_status_and_sex` and `foreign_worker` are
deliberately absent: they are protected characteristics a lender may not score on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from credit_risk.policy import (
    BAND_FLOORS,
    COSTS,
    MAX_BATCH_APPLICANTS,
    MAX_REASON_CODES,
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


class Applicant(BaseModel):
    """One loan application, in the API's vocabulary (amounts in Deutsche Mark, as in the data)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "example": {
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
        },
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
            description="Instalment as a share of disposable income, in the data set's four "
            "classes: 1 (lowest share) to 4 (highest).",
            examples=[3],
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
            description="Years at present residence, in the data set's four classes (1 to 4).",
            examples=[2],
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


def schema_hash() -> str:
    """Fingerprint of the applicant contract, stored with each model to refuse a mismatch."""
    canonical = json.dumps(Applicant.model_json_schema(), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()


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
            description="Risk band by score, lowest score per band: "
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
    model_version: Annotated[str, Field(description="Tag of the model that decided.")]
    decision_id: Annotated[
        str,
        Field(
            description="Unique id of this decision in the decision log: keep it with the loan "
            "to join the outcome later (retraining, audit).",
            examples=["3f2b8c1e9a7d4e0f8b6a5c4d3e2f1a0b"],
        ),
    ]


ApplicantBatch = Annotated[list[Applicant], Field(min_length=1, max_length=MAX_BATCH_APPLICANTS)]
"""The body of /classify_batch: 1 to MAX_BATCH_APPLICANTS applicants."""


class Decisions(RootModel[list[Decision]]):
    """The answer for a batch: one decision per applicant, in input order."""


def example_applicant() -> dict[str, Any]:
    """The documented example payload, for docs, the form and tests."""
    example = Applicant.model_config.get("json_schema_extra")
    assert isinstance(example, dict)
    value = example["example"]
    assert isinstance(value, dict)
    return dict(value)
