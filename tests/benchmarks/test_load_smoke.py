"""The load-test tooling: realistic bodies, the bad-input mix, and a short Locust run in CI.

The smoke run is not a benchmark: it drives the real server for a few seconds through the same
locustfile `make load-test` uses and requires zero failures, where a failure includes a 200 whose
body is not a valid Decision and bad input not refused with the documented 4xx. How many requests
of each kind those seconds allow is the host's business; the whole bad-input mix is sent once by
`test_server_refuses_every_kind_of_bad_input`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from credit_risk.schema import FEATURES, Applicant
from load_tests.applicants import (
    bad_requests,
    refusal_problem,
    sample_applicants,
    training_applicants,
)
from tests.conftest import ROOT

LOCUSTFILE = ROOT / "load_tests" / "locustfile.py"
SMOKE_SECONDS = 5
SMOKE_USERS = 8


def test_training_applicants_are_strict_api_bodies() -> None:
    rows = training_applicants()
    assert len(rows) == 1000
    for row in rows:
        assert list(row) == list(FEATURES)
        # the wire form: parse the JSON text strictly, as the service does
        Applicant.model_validate_json(json.dumps(row))
        for name, field in Applicant.model_fields.items():
            if field.annotation is int:
                assert type(row[name]) is int, name


def test_samples_vary_and_repeat_with_a_seed() -> None:
    a = sample_applicants(500, seed=3)
    assert a == sample_applicants(500, seed=3)
    assert a != sample_applicants(500, seed=4)
    distinct = {json.dumps(x, sort_keys=True) for x in a}
    assert len(distinct) > 250  # resampled rows, not one fixed payload
    assert {x["purpose"] for x in a} >= {"car_new", "radio_television", "furniture_equipment"}


def test_every_bad_request_is_really_bad() -> None:
    """Each payload in the bad-input mix fails the schema (or the size/batch bounds)."""
    for bad in bad_requests():
        if bad.path == "/classify":
            with pytest.raises(ValueError, match=bad.field):
                Applicant.model_validate_json(bad.body)
        else:
            assert bad.status == 413 or bad.body == b"[]" or len(json.loads(bad.body)) > 1000


@pytest.mark.integration
def test_server_refuses_every_kind_of_bad_input(server) -> None:
    """The whole mix once each (the Locust run below only samples it)."""
    problems = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for bad in bad_requests():
            r = client.post(
                bad.path, content=bad.body, headers={"Content-Type": "application/json"}
            )
            problem = refusal_problem(bad, r.status_code, r.content)
            if problem is not None:
                problems.append(problem)
    assert not problems, problems


@pytest.mark.integration
def test_locust_smoke(server, tmp_path: Path) -> None:
    prefix = tmp_path / "smoke"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCUST_BATCH_SIZE": "20"}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
            *("-u", str(SMOKE_USERS), "-r", str(SMOKE_USERS), "-t", f"{SMOKE_SECONDS}s"),
            *("--host", server.url, "--csv", str(prefix), "--only-summary"),
            *("--stop-timeout", "5"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    with Path(f"{prefix}_stats.csv").open() as fh:
        stats = {row["Name"]: row for row in csv.DictReader(fh)}
    failures = Path(f"{prefix}_failures.csv").read_text()
    report = f"{run.stderr[-3000:]}\n{failures}\n{server.log()[-3000:]}"
    assert run.returncode == 0, report
    # how many requests a few seconds allow depends on the host; that every one was answered
    # correctly, and that the summary adds up, does not
    rows = {name: row for name, row in stats.items() if name != "Aggregated"}
    assert set(rows) <= {"/classify", "/classify_batch"} | {
        f"bad input: {bad.name}" for bad in bad_requests()
    }, report
    assert int(stats["/classify"]["Request Count"]) > 0, report
    for column in ("Request Count", "Failure Count"):
        total = sum(int(row[column]) for row in rows.values())
        assert int(stats["Aggregated"][column]) == total, report
    assert int(stats["Aggregated"]["Failure Count"]) == 0, report
    assert not failures.strip().splitlines()[1:], report  # the header, no failure rows
