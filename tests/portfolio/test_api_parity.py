"""Every row of a bulk run gets the answer a real `/classify` gives for that applicant."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from credit_risk.portfolio.job import Job, run
from tests.conftest import Server
from tests.portfolio.conftest import book, write

SAMPLE = 300


@pytest.mark.integration
def test_bulk_rows_equal_classify(
    server: Server, model_tag: str, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    sample = random.Random(14).sample(applicants, SAMPLE)
    src = write(book(sample), tmp_path / "sample.parquet")
    summary = run(
        Job(
            src,
            tmp_path / "out.parquet",
            model_tag,
            ("account_id",),
            audit_log=tmp_path / "a.jsonl",
        )
    )
    assert summary.exit_code == 0
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for applicant, row in zip(sample, rows, strict=True):
            answer = client.post("/classify", json=applicant).json()
            assert row["probability_of_default"] == pytest.approx(
                answer["probability_of_default"], abs=1e-12
            )
            assert (row["score"], row["risk_band"], row["decision"]) == (
                answer["score"],
                answer["risk_band"],
                answer["decision"],
            )
            reasons = answer["reason_codes"]
            codes = [row[f"reason_{k}"] for k in range(1, 5)]
            points = [row[f"reason_{k}_points"] for k in range(1, 5)]
            assert codes == [r["code"] for r in reasons] + [None] * (4 - len(reasons))
            assert points == [r["points"] for r in reasons] + [None] * (4 - len(reasons))
            assert row["model_version"] == answer["model_version"]
            recourse = answer["recourse"] or {}
            assert (
                row["recourse_credit_amount"],
                row["recourse_duration_months"],
                row["recourse_method"],
            ) == (
                recourse.get("credit_amount"),
                recourse.get("duration_months"),
                recourse.get("method"),
            )
