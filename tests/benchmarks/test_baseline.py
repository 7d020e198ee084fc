"""The Flask + gunicorn baseline serves the same model, and the benchmark harness measures it.

Both start real processes: gunicorn with two sync workers on a free loopback port, and (when wrk
is installed) one tiny `load_tests.bench` run against it, whose figures must be internally
consistent rather than fast.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import matplotlib.image as mpl_image
import numpy as np
import pandas as pd
import pytest

from credit_risk.model_store import load_model
from credit_risk.policy import ScoreScaling
from credit_risk.schema import FEATURES
from load_tests import bench, harness
from load_tests.applicants import sample_applicants
from load_tests.report import write_report


@pytest.fixture(scope="module")
def baseline(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    [flask] = [c for c in bench.configs((), ()) if c.key == "flask-gunicorn"]
    port = harness.free_port()
    argv = [a.format(port=port) for a in flask.argv]
    log = tmp_path_factory.mktemp("baseline") / "gunicorn.log"
    url = f"http://127.0.0.1:{port}"
    env = {"CREDIT_RISK_MODEL": model_tag}
    with harness.running(argv, log, url=url, env=env, ready_path=flask.ready_path):
        yield url


@pytest.mark.integration
def test_baseline_serves_the_stored_model(baseline: str, model_tag: str) -> None:
    loaded = load_model(model_tag)
    threshold = float(loaded.metadata["threshold"])
    scaling = ScoreScaling.from_metadata(loaded.metadata["score_scaling"])
    applicants = sample_applicants(30, seed=11)
    expected = loaded.pipeline.predict_proba(pd.DataFrame(applicants, columns=list(FEATURES)))[:, 1]
    decisions = set()
    with httpx.Client(base_url=baseline, timeout=30) as client:
        for applicant, p in zip(applicants, expected, strict=True):
            body = client.post("/predict", json=applicant).raise_for_status().json()
            assert body["model_version"] == model_tag
            assert math.isclose(body["probability_of_default"], p, rel_tol=0, abs_tol=1e-12)
            assert body["decision"] == ("decline" if p > threshold else "approve")
            assert body["score"] == round(float(scaling.score(np.array([p]))[0]))
            decisions.add(body["decision"])
    assert decisions == {"approve", "decline"}  # the sample exercises both sides


@pytest.mark.integration
def test_baseline_refuses_bad_input(baseline: str) -> None:
    applicant = sample_applicants(1, seed=1)[0]
    del applicant["age_years"]
    r = httpx.post(f"{baseline}/predict", json=applicant, timeout=30)
    assert r.status_code == 400
    assert "age_years" in r.json()["error"]
    r = httpx.post(f"{baseline}/predict", content=b"not json", timeout=30)
    assert r.status_code == 400


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_bench_harness_measures_the_baseline(model_tag: str, tmp_path: Path) -> None:
    """One bounded bench run: the harness's figures agree with each other and with wrk's."""
    args = bench.parse_args(
        ["--rounds", "1", "--duration", "2", "--warmup", "1", "--concurrency", "1,4"]
        + ["--only", "flask-gunicorn", "--out", str(tmp_path), "--model", model_tag]
    )
    results = bench.run(args)
    results["command"] = "test"
    [start] = results["starts"]
    logs = "\n".join(p.read_text() for p in (tmp_path / "bench-logs").iterdir())
    assert start["failure"] is None, logs[-5000:]
    assert start["model_version"] == model_tag
    assert 0 < start["ready_s"] < start["first_answer_s"]
    assert start["processes"] == 3  # gunicorn master and two workers
    assert start["pss_idle_mb"] > 50  # pandas and scikit-learn are loaded in each worker
    points = results["points"]
    assert [p["concurrency"] for p in points] == [1, 4]
    for p in points:
        assert p["requests"] > 0
        # every request answered 200 on a sound connection (a timeout would be the host's pace)
        assert {kind: n for kind, n in p["errors"].items() if kind != "timeout"} == dict.fromkeys(
            ("connect", "read", "write", "status"), 0
        )
        assert math.isclose(p["requests_per_s"], p["requests"] / p["duration_s"])
        assert 0 < p["p50_ms"] <= p["p99_ms"] <= p["max_ms"]
        # the server did the work: it burnt CPU, and no more than the machine has
        assert 0 < p["server_cpu_cores"] <= os.cpu_count()
        assert p["server_cpu_cores"] <= p["machine_busy_cores"] + 0.1
        assert p["pss_peak_mb"] >= start["pss_idle_mb"] * 0.5
    write_report(results, tmp_path)
    assert json.loads((tmp_path / "benchmark.json").read_text()) == results  # plain data
    rows = [
        line
        for line in (tmp_path / "benchmark.md").read_text().splitlines()
        if line.startswith("| Flask + gunicorn, 2 sync workers | `/classify` |")
    ]
    assert [row.split(" | ")[2] for row in rows] == ["1", "4"]  # one row per measured point
    png = mpl_image.imread(tmp_path / "benchmark.png")
    assert png.shape[:2] == (528, 1320)  # two panels, 12 x 4.8 in at 110 dpi
    assert png.std() > 0.05  # lines and text on the white background, not a blank canvas
