"""What a platform team relies on, against a real server: auth, metrics, decision store, drift."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest

from client import classify_examples
from credit_risk.decision_store import open_store
from credit_risk.decision_store.chain import verify
from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import FEATURES, example_applicant
from credit_risk.training.data import applicant_records, load_dataset
from load_tests import harness
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration

TOKENS = ("token-alpha", "token-beta")
IN_FLIGHT_LIMIT = 2
DRIFT_WINDOW = 50


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers of this module keep their decision store (one file, shared)."""
    return tmp_path_factory.mktemp("decisions")


def _store_url(log_dir: Path) -> str:
    return f"sqlite:///{log_dir / 'decisions.sqlite'}"


def _start(model_tag: str, log_dir: Path, name: str) -> Server:
    return start_server(
        "service:CreditRiskService",
        log_dir.parent / f"{name}.log",
        env={
            "CREDIT_RISK_MODEL": model_tag,
            "CREDIT_RISK_API_TOKENS": ",".join(TOKENS),
            "CREDIT_RISK_MAX_IN_FLIGHT": str(IN_FLIGHT_LIMIT),
            "CREDIT_RISK_DRIFT_WINDOW": str(DRIFT_WINDOW),
            "CREDIT_RISK_DECISION_STORE": _store_url(log_dir),
        },
    )


@pytest.fixture(scope="module")
def secured(model_tag: str, log_dir: Path) -> Iterator[Server]:
    """A server with auth on, a tiny in-flight limit and drift window, its own decision log."""
    srv = _start(model_tag, log_dir, "secured")
    yield srv
    stop_server(srv)


AUTH = {"authorization": f"Bearer {TOKENS[1]}"}


def _records(log_dir: Path) -> list[dict[str, Any]]:
    store = open_store(_store_url(log_dir))
    try:
        return [r.view() for r in store.records()]
    finally:
        store.close()


def _metrics(server: Server) -> str:
    r = httpx.get(f"{server.url}/metrics", timeout=10)  # no token: scraping stays open
    assert r.status_code == 200
    return r.text


def _sample(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# --- auth --------------------------------------------------------------------------------------


def test_probes_and_metrics_need_no_token(secured: Server) -> None:
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{secured.url}{path}", timeout=10).status_code == 200, path


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKENS[0]}"}],
    ids=["missing", "wrong", "wrong-scheme"],
)
def test_api_refuses_without_a_valid_token(secured: Server, headers: dict[str, str]) -> None:
    r = httpx.post(f"{secured.url}/classify", json=example_applicant(), headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "missing or invalid bearer token"}  # nothing more leaks
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_client_with_token_is_served(secured: Server) -> None:
    with bentoml.SyncHTTPClient(secured.url, token=TOKENS[0], server_ready_timeout=30) as c:
        decision = c.classify(example_applicant())
    assert decision["decision"] in {"approve", "decline"}


def test_example_client_retries_through_overload(secured: Server) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        runs = list(pool.map(lambda _: classify_examples(secured.url, TOKENS[1]), range(24)))
    assert all(len(decisions) == 3 for decisions in runs)


# --- metrics -------------------------------------------------------------------------------------


def test_every_metric_moves_by_the_expected_amount(secured: Server) -> None:
    applicants = applicant_records(load_dataset().X.iloc[: DRIFT_WINDOW + 10])
    before = _metrics(secured)

    decisions = [
        httpx.post(f"{secured.url}/classify", json=a, headers=AUTH, timeout=30).json()
        for a in applicants[:10]
    ]
    batch = httpx.post(
        f"{secured.url}/classify_batch", json=applicants[10:], headers=AUTH, timeout=30
    )
    assert batch.status_code == 200
    decisions += batch.json()
    n = len(decisions)
    assert n == len(applicants)

    invalid = [{**example_applicant(), "age_years": 5}, {"purpose": "car_new"}, []]
    for body in invalid:
        r = httpx.post(f"{secured.url}/classify", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 400
    oversize = httpx.post(
        f"{secured.url}/classify",
        content=b" " * (MAX_BODY_BYTES + 1),
        headers={**AUTH, "content-type": "application/json"},
        timeout=30,
    )
    assert oversize.status_code == 413
    for _ in range(2):
        assert httpx.post(f"{secured.url}/classify", json=example_applicant()).status_code == 401
    form_body = httpx.post(
        f"{secured.url}/classify",
        content=b"age_years=35",
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert form_body.status_code == 415
    assert httpx.get(f"{secured.url}/classify", headers=AUTH, timeout=30).status_code == 405

    def call(a: dict[str, Any]) -> int:
        return httpx.post(f"{secured.url}/classify", json=a, headers=AUTH, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = Counter(pool.map(call, [example_applicant()] * 120))
    assert set(statuses) <= {200, 429}
    assert statuses[429] > 0, "40 concurrent callers against a limit of 2 per worker"
    after = _metrics(secured)

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    served = n + statuses[200]
    by_outcome = Counter((d["decision"], d["risk_band"]) for d in decisions)
    example_outcome = httpx.post(
        f"{secured.url}/classify", json=example_applicant(), headers=AUTH, timeout=30
    ).json()
    by_outcome[(example_outcome["decision"], example_outcome["risk_band"])] += statuses[200]
    for (decision, band), count in by_outcome.items():
        assert delta("credit_risk_decisions_total", decision=decision, risk_band=band) == count
    assert delta("credit_risk_probability_of_default_count") == served
    assert delta("credit_risk_batch_rows_sum") == served
    assert delta("credit_risk_inference_seconds_count") >= 1
    assert delta("credit_risk_rejected_requests_total", reason="validation") == len(invalid)
    assert delta("credit_risk_rejected_requests_total", reason="size") == 1
    assert delta("credit_risk_rejected_requests_total", reason="auth") == 2
    assert delta("credit_risk_rejected_requests_total", reason="media_type") == 1
    assert delta("credit_risk_rejected_requests_total", reason="method") == 1
    assert delta("credit_risk_rejected_requests_total", reason="overload") == statuses[429]

    model_version = decisions[0]["model_version"]
    assert _sample(after, "credit_risk_model_info", model_version=model_version) >= 1
    scraped = [after]

    def window_full() -> bool:  # the drift gauges are published shortly after traffic, not inline
        scraped.append(_metrics(secured))
        return _sample(scraped[-1], "credit_risk_drift_window_size") == DRIFT_WINDOW

    harness.wait_for(window_full, "the drift window is published full")
    after = scraped[-1]
    for signal in ("score", *FEATURES):
        assert f'credit_risk_drift_psi{{signal="{signal}"}}' in after, signal
    assert "bentoml_service_adaptive_batch_size_bucket" in after
    assert "bentoml_service_request_duration_seconds_bucket" in after


# --- decision store -------------------------------------------------------------------------------


def test_every_decision_is_logged_exactly_once_and_survives_a_restart(
    secured: Server, model_tag: str, log_dir: Path
) -> None:
    known = {r["decision_id"] for r in _records(log_dir)}
    applicants = applicant_records(load_dataset().X.iloc[100:160])

    def admitted(path: str, body: Any) -> Any:
        """The answer once admitted: the tiny in-flight limit sheds some, retried as clients
        should, for as long as that takes on a busy machine."""
        answers: list[httpx.Response] = []

        def post() -> bool:
            url = f"{secured.url}{path}"
            answers.append(httpx.post(url, json=body, headers=AUTH, timeout=30))
            return answers[-1].status_code != 429

        harness.wait_for(post, f"{path} admitted")
        assert answers[-1].status_code == 200, answers[-1].text
        return answers[-1].json()

    def single(a: dict[str, Any]) -> list[dict[str, Any]]:
        return [admitted("/classify", a)]

    def batch(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(admitted("/classify_batch", chunk))

    jobs = [(single, a) for a in applicants[:30]] + [
        (batch, applicants[i : i + 10]) for i in range(30, 60, 10)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [d for ds in pool.map(lambda job: job[0](job[1]), jobs) for d in ds]
    assert len(results) == len(applicants)

    new = [r for r in _records(log_dir) if r["decision_id"] not in known]
    ids = [r["decision_id"] for r in new]
    assert len(ids) == len(set(ids)) == len(applicants), "exactly one record per decision"
    assert set(ids) == {d["decision_id"] for d in results}
    by_id = {r["decision_id"]: r for r in new}
    for d in results:
        record = by_id[d["decision_id"]]
        assert record["outputs"]["probability_of_default"] == d["probability_of_default"]
        assert record["outputs"]["decision"] == d["decision"]
        assert record["model_version"] == d["model_version"]
        assert record["reasons"] == d["reason_codes"]
        assert list(record["inputs"]) == list(FEATURES)
        assert record["decided_at"]

    # restart: the records are still there, and new decisions are appended after them
    stop_server(secured)
    restarted = _start(model_tag, log_dir, "restarted")
    try:
        r = httpx.post(f"{restarted.url}/classify", json=applicants[0], headers=AUTH, timeout=30)
        assert r.status_code == 200
        after = _records(log_dir)
        after_ids = {rec["decision_id"] for rec in after}
        assert set(ids) <= after_ids
        assert r.json()["decision_id"] in after_ids
        assert len(after) == len(after_ids)
        store = open_store(_store_url(log_dir))
        assert verify(store).problems == []  # each process chained its own records
    finally:
        stop_server(restarted)
