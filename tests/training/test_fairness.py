"""Fairness report: figures on hand-counted groups, age bands, protected columns kept apart."""

from __future__ import annotations

import math

import pytest

from credit_risk.schema import FEATURES
from credit_risk.training.data import PROTECTED_COLUMNS, load_dataset, protected_attributes
from credit_risk.training.fairness import (
    FOUR_FIFTHS,
    age_band,
    attribute_report,
    fairness_markdown,
    fairness_report,
)


def test_rates_and_ratios_on_hand_counted_groups() -> None:
    # group a: 4 applicants, 3 approved, 1 of them bad; group b: 5 applicants, 2 approved, 0 bad
    groups = ["a"] * 4 + ["b"] * 5
    approved = [1, 1, 1, 0, 1, 1, 0, 0, 0]
    bad = [1, 0, 0, 1, 0, 0, 1, 1, 0]
    report = attribute_report(groups, approved, bad)
    by_group = {g["group"]: g for g in report["groups"]}
    assert by_group["a"]["approval_rate"] == 0.75
    assert by_group["b"]["approval_rate"] == 0.4
    assert by_group["a"]["bad_rate_among_approved"] == pytest.approx(1 / 3)
    assert by_group["b"]["bad_rate_among_approved"] == 0.0
    assert report["adverse_impact_ratio"] == pytest.approx(0.4 / 0.75)
    assert (report["reference_group"], report["lowest_group"]) == ("a", "b")
    assert report["bad_rate_difference_among_approved"] == pytest.approx(1 / 3)


def test_a_group_with_no_approvals_has_no_bad_rate_but_counts_in_the_ratio() -> None:
    report = attribute_report(["a", "a", "b"], [1, 1, 0], [0, 1, 0])
    assert report["adverse_impact_ratio"] == 0.0
    assert math.isnan(report["groups"][1]["bad_rate_among_approved"])
    assert report["bad_rate_difference_among_approved"] == 0.0


def test_age_bands_edges() -> None:
    assert list(age_band([19, 24, 25, 34, 35, 49, 50, 75])) == [
        "under 25",
        "under 25",
        "25-34",
        "25-34",
        "35-49",
        "35-49",
        "50 and over",
        "50 and over",
    ]


def test_report_takes_the_smaller_ratio_and_renders() -> None:
    report = fairness_report(
        ["female", "male", "male", "female"], [20, 60, 30, 40], [1, 1, 0, 1], [0, 0, 0, 1]
    )
    assert report["adverse_impact_ratio"] == min(
        a["adverse_impact_ratio"] for a in report["attributes"].values()
    )
    assert report["four_fifths"] == FOUR_FIFTHS
    text = fairness_markdown(report)
    assert "| sex | female | 2 | 100.0% | 50.0% |" in text
    assert "| age_band | 25-34 |" in text


def test_protected_columns_line_up_with_the_data_and_are_never_features() -> None:
    dataset = load_dataset()
    protected = protected_attributes(dataset.path)
    assert len(protected) == len(dataset.y)
    assert set(protected["sex"]) == {"female", "male"}
    assert int((protected["sex"] == "female").sum()) == 310
    assert not set(PROTECTED_COLUMNS) & set(FEATURES)
    assert not {"sex", *PROTECTED_COLUMNS} & set(dataset.X.columns)
