"""The real server, called as users call it: BentoML's client and raw HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest

from credit_risk.decision_store import open_store
from credit_risk.model_store import load_model
from credit_risk.policy import MAX_BATCH_APPLICANTS, MAX_BODY_BYTES, SCALING, ScoreScaling
from credit_risk.schema import FEATURES, Decision, Recourse, example_applicant
from credit_risk.serving.tuning import DEFAULT_MAX_IN_FLIGHT
from credit_risk.training.data import applicant_records, load_dataset
from tests.conftest import ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applicants() -> list[dict[str, Any]]:
    """200 real applicants from the data set."""
    return applicant_records(load_dataset().X.iloc[:200])


@pytest.fixture(scope="module")
def expected(model_tag: str, applicants: list[dict[str, Any]]) -> np.ndarray:
    """The in-process pipeline's probabilities for the same applicants."""
    pipeline = load_model(model_tag).pipeline
    frame = pd.DataFrame(applicants)
    return np.asarray(pipeline.predict_proba(frame)[:, 1])


@pytest.fixture(scope="module")
def client(server: Server):
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as c:
        yield c


def test_single_matches_in_process_pipeline(client, applicants, expected) -> None:
    got = [client.classify(a)["probability_of_default"] for a in applicants]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_batch_matches_in_process_pipeline(client, applicants, expected) -> None:
    decisions = client.classify_batch(applicants)
    assert len(decisions) == len(applicants)
    got = [d["probability_of_default"] for d in decisions]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_decision_is_complete_and_consistent(client, model_tag: str) -> None:
    risky = {
        **example_applicant(),
        "checking_account": "below_0",
        "duration_months": 72,
        "savings": "below_100",
        "credit_history": "delayed_in_past",
        "credit_amount": 15000.0,
    }
    d = Decision.model_validate(client.classify(risky))
    assert d.model_version == model_tag
    assert d.decision == ("decline" if d.probability_of_default > d.threshold else "approve")
    assert d.decision == "decline"
    assert 1 <= len(d.reason_codes) <= 4
    assert all(r.points < 0 for r in d.reason_codes)
    assert all(re.fullmatch(r"RC\d\d", r.code) for r in d.reason_codes)


def test_a_decline_says_what_would_be_approved_and_it_is(client, applicants) -> None:
    decisions = [Decision.model_validate(d) for d in client.classify_batch(applicants)]
    assert all(d.recourse is None for d in decisions if d.decision == "approve")
    declined = [
        (a, d) for a, d in zip(applicants, decisions, strict=True) if d.decision == "decline"
    ]
    assert all(d.recourse is not None for _, d in declined)
    found = [(a, d.recourse) for a, d in declined if d.recourse and d.recourse.found]
    assert found, "some declines in the data set have a recourse"
    # the same applicants asking for what their recourse says: every one approved
    changed = [
        {**a, "credit_amount": r.credit_amount, "duration_months": r.duration_months}
        for a, r in found
    ]
    assert {d["decision"] for d in client.classify_batch(changed)} == {"approve"}
    # a single answer carries the same recourse as the batch
    applicant, decision = declined[0]
    assert Decision.model_validate(client.classify(applicant)).recourse == decision.recourse


def _metric_sum(text: str, name: str, label_filter: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line:
            key, value = line.rsplit(" ", 1)
            values[key] = values.get(key, 0.0) + float(value)
    return values


def _metrics(server: Server) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


def _hammer(server: Server, applicants: list[dict[str, Any]]) -> tuple[str, str]:
    """200 /classify calls, 64 in flight at a time, all answered; /metrics before and after.

    Fired from one event loop, so they reach the server together however fast it is (threads
    with one connection each trickle in too slowly on a quiet machine). 64 at a time: all of
    them may land on one API worker, which admits DEFAULT_MAX_IN_FLIGHT (64) at once. The
    server is shared with other tests, so only the difference between the two readings is
    this burst's.
    """

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=DEFAULT_MAX_IN_FLIGHT)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post("/classify", json=a) for a in applicants)
            )
        return [r.status_code for r in responses]

    before = _metrics(server)
    statuses = asyncio.run(burst())
    assert statuses == [200] * len(applicants)
    return before, _metrics(server)


def _batches_above(metrics: str, name: str, label_filter: str, le: str) -> tuple[float, float]:
    """(observations, observations above the `le` bucket) of a histogram."""
    buckets = _metric_sum(metrics, f"{name}_bucket", label_filter)
    total = sum(_metric_sum(metrics, f"{name}_count", label_filter).values())
    at_most = sum(v for k, v in buckets.items() if f'le="{le}"' in k)
    return total, total - at_most


def _batches_during(
    readings: tuple[str, str], name: str, label_filter: str = ""
) -> tuple[float, float]:
    """(runner batches, batches of more than one row or request) between the two readings."""
    (total0, larger0), (total1, larger1) = (
        _batches_above(text, name, label_filter, "1.0") for text in readings
    )
    return total1 - total0, larger1 - larger0


def test_concurrent_single_calls_are_scored_in_batches(server: Server, applicants) -> None:
    # default: each API worker coalesces the calls of one event-loop turn into one runner call
    # (so BentoML sees few, large calls); rows per runner batch is the proof
    total, larger = _batches_during(_hammer(server, applicants), "credit_risk_batch_rows")
    assert total > 0
    assert larger > 0, "no runner batch held more than one applicant"


@pytest.fixture(scope="module")
def uncoalesced_server(model_tag: str, tmp_path_factory: pytest.TempPathFactory):
    """BentoML's adaptive batching alone: one runner call per request."""
    srv = start_server(
        "service:CreditRiskService",
        tmp_path_factory.mktemp("uncoalesced") / "server.log",
        env={"CREDIT_RISK_MODEL": model_tag, "CREDIT_RISK_COALESCING": "0"},
    )
    yield srv
    stop_server(srv)


def test_adaptive_batching_merges_concurrent_requests(uncoalesced_server: Server, applicants):
    total, larger = _batches_during(
        _hammer(uncoalesced_server, applicants),
        "bentoml_service_adaptive_batch_size",
        'method_name="score"',
    )
    assert total > 0
    assert larger > 0, "no runner batch held more than one request"


def test_batch_order_is_preserved_under_concurrency(server: Server, applicants, expected) -> None:
    rng = np.random.default_rng(7)
    orders = [rng.permutation(len(applicants))[: rng.integers(1, 60)] for _ in range(40)]

    def call(order: np.ndarray) -> tuple[np.ndarray, list[float]]:
        body = [applicants[i] for i in order]
        r = httpx.post(f"{server.url}/classify_batch", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return order, [d["probability_of_default"] for d in r.json()]

    with ThreadPoolExecutor(max_workers=16) as pool:
        for order, got in pool.map(call, orders):
            np.testing.assert_allclose(got, expected[order], rtol=0, atol=1e-9)


def test_model_card(client, model_tag: str) -> None:
    card = client.model_card()
    stored = bentoml.models.get(model_tag)
    meta = stored.info.metadata
    assert card["tag"] == model_tag
    assert datetime.fromisoformat(card["created_at"]) == stored.info.creation_time
    assert card["labels"] == dict(stored.info.labels)
    assert card["threshold"] == meta["threshold"]
    assert 0 < card["threshold"] < 1
    assert card["score_scaling"] == meta["score_scaling"]
    assert ScoreScaling.from_metadata(card["score_scaling"]) == SCALING
    assert card["features"] == list(FEATURES)
    assert card["features"] == list(applicant_records(load_dataset().X.iloc[:1])[0])
    assert card["estimator"] in {"logreg", "hgb"}
    held_out = card["metrics"]["held_out"]
    assert held_out == meta["metrics"]["held_out"]
    assert 0.5 < held_out["roc_auc"] <= 1
    assert held_out["threshold"] == card["threshold"]
    assert card["metrics"]["cv"]["roc_auc"]["n"] >= 1


# --- bad input: every case a 4xx that names the field or limit, never a 5xx -------------------


def _post(server: Server, path: str, content: bytes | str, ctype: str = "application/json"):
    return httpx.post(
        f"{server.url}{path}", content=content, headers={"content-type": ctype}, timeout=30
    )


def _with(**changes: Any) -> str:
    body = {**example_applicant(), **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...})


BAD_SINGLE = [
    ("missing field", _with(age_years=...), "age_years"),
    ("wrong type", _with(duration_months="twelve"), "duration_months"),
    ("numeric string", _with(duration_months="12"), "duration_months"),
    ("unknown category", _with(purpose="spaceship"), "purpose"),
    ("negative amount", _with(credit_amount=-5.0), "credit_amount"),
    ("zero duration", _with(duration_months=0), "duration_months"),
    ("under age", _with(age_years=17), "age_years"),
    ("extra field", _with(foreign_worker="yes"), "foreign_worker"),
    ("protected field", _with(personal_status_and_sex="male : single"), "personal_status_and_sex"),
    ("null", _with(savings=None), "savings"),
    ("not an object", "[1, 2]", "body: Input should be an object"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_SINGLE, ids=[c[0] for c in BAD_SINGLE])
def test_bad_single_input_is_400_naming_the_field(server: Server, case, body, field) -> None:
    r = _post(server, "/classify", body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"], r.text


def test_non_json_body_is_400(server: Server) -> None:
    r = _post(server, "/classify", "this is not json")
    assert r.status_code == 400, r.text
    assert "invalid input: body: Invalid JSON" in r.json()["error"], r.text


@pytest.mark.parametrize("path", ["/classify", "/classify_batch"])
def test_empty_body_is_400_saying_so(server: Server, path: str) -> None:
    r = _post(server, path, b"")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("the request body is empty"), r.text


def test_an_error_locates_the_field_the_same_way_in_loc_and_message(server: Server) -> None:
    r = _post(server, "/classify", _with(age_years=...))
    assert r.status_code == 400, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["age_years"]]
    assert r.json()["error"] == "invalid input: age_years: Field required"


def test_empty_batch_is_400(server: Server) -> None:
    r = _post(server, "/classify_batch", "[]")
    assert r.status_code == 400, r.text
    assert "at least 1" in r.text, r.text


def test_oversize_batch_is_400_naming_the_limit(server: Server) -> None:
    body = json.dumps([example_applicant()] * (MAX_BATCH_APPLICANTS + 1))
    assert len(body) < MAX_BODY_BYTES
    r = _post(server, "/classify_batch", body)
    assert r.status_code == 400, r.text
    assert str(MAX_BATCH_APPLICANTS) in r.text, r.text


def test_bad_item_in_batch_names_its_index_and_field(server: Server) -> None:
    items = [example_applicant(), {**example_applicant(), "housing": "castle"}]
    r = _post(server, "/classify_batch", json.dumps(items))
    assert r.status_code == 400, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [[1, "housing"]], r.text
    assert r.json()["error"].startswith("invalid input: 1.housing: "), r.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/classify", 405), ("GET", "/model_card", 405), ("GET", "/nowhere", 404)],
)
def test_unknown_routes_and_methods_answer_json(
    server: Server, method: str, path: str, status: int
) -> None:
    r = httpx.request(method, f"{server.url}{path}", timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert path in r.json()["error"]
    if status == 405:
        assert r.headers["allow"] == "POST"


def test_probes_and_metrics_keep_their_plain_answers(server: Server) -> None:
    for path in ("/livez", "/readyz"):
        r = httpx.get(f"{server.url}{path}", timeout=30)
        assert (r.status_code, r.headers["content-type"].split(";")[0]) == (200, "text/plain")
    r = httpx.get(f"{server.url}/metrics", timeout=30)
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    wrong = httpx.post(f"{server.url}/livez", timeout=30)
    assert wrong.status_code == 405
    assert not wrong.headers["content-type"].startswith("application/json")


def test_the_decision_record_carries_the_answers_recourse(server: Server, applicants) -> None:
    r = httpx.post(f"{server.url}/classify_batch", json=applicants[:50], timeout=30)
    assert r.status_code == 200, r.text
    answers = {d["decision_id"]: d["recourse"] for d in r.json()}
    store = open_store(f"sqlite:///{server.home / 'decisions.sqlite'}")
    records = {}
    for decision_id in answers:
        record = store.get(decision_id)
        assert record is not None
        records[decision_id] = json.loads(record.recourse) if record.recourse else None
    assert records == answers
    assert any(answers.values())


def test_a_decision_is_stored_in_the_servers_own_home_not_the_repository(server: Server) -> None:
    r = httpx.post(f"{server.url}/classify", json=example_applicant(), timeout=30)
    assert r.status_code == 200, r.text
    decision_id = r.json()["decision_id"]
    store = open_store(f"sqlite:///{server.home / 'decisions.sqlite'}")
    assert server.home.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert store.get(decision_id) is not None
    assert not list(ROOT.glob("decisions.sqlite*")), "a test's decision reached the repository"


def test_body_over_limit_is_413(server: Server) -> None:
    r = _post(server, "/classify_batch", b" " * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413
    assert str(MAX_BODY_BYTES) in r.text


def test_chunked_body_over_limit_is_413(server: Server) -> None:
    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(
        f"{server.url}/classify",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413


def test_the_document_gives_each_endpoint_its_decision_schema(server: Server) -> None:
    doc = httpx.get(f"{server.url}/docs.json", timeout=30).json()

    def answer(path: str) -> dict[str, Any]:
        ok = doc["paths"][path]["post"]["responses"]["200"]
        return dict(ok["content"]["application/json"]["schema"])

    assert set(answer("/classify")["required"]) == set(Decision.model_fields)
    batch = answer("/classify_batch")
    assert batch["type"] == "array"
    assert batch["items"] == {"$ref": "#/components/schemas/Decision"}
    assert set(doc["components"]["schemas"]["Decision"]["required"]) == set(Decision.model_fields)
    recourse = doc["components"]["schemas"]["Decision"]["properties"]["recourse"]
    assert {"$ref": "#/components/schemas/Recourse"} in recourse["anyOf"]
    assert set(doc["components"]["schemas"]["Recourse"]["properties"]) == set(Recourse.model_fields)


def test_the_example_client_runs_with_the_venv_interpreter_alone(
    server: Server, tmp_path: Path
) -> None:
    # as a new user runs it from a fresh clone: no Makefile, no PYTHONPATH, any directory; the
    # copy proves the project itself is installed (the docstring says to copy it)
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} missing: `make setup` creates it")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    copy = tmp_path / "my_client.py"
    copy.write_text((ROOT / "client.py").read_text())
    for script in (ROOT / "client.py", copy):
        run = subprocess.run(
            [str(python), str(script), "--url", server.url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        decoder, text, decisions = json.JSONDecoder(), run.stdout.strip(), []
        while text:
            decision, end = decoder.raw_decode(text)
            decisions.append(Decision.model_validate(decision))
            text = text[end:].strip()
        assert len(decisions) == 3, run.stdout


# --- the smaller refusals at the edge ----------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "DELETE", "PATCH", "PUT"])
def test_other_methods_on_classify_are_405_naming_the_allowed_one(server: Server, method: str):
    r = httpx.request(method, f"{server.url}/classify", content=_with(), timeout=30)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "POST"
    assert r.json()["error"] == f"method {method} not allowed on /classify; allowed: POST"


def test_a_compressed_body_is_415_whether_or_not_it_really_is(server: Server) -> None:
    body = _with().encode()
    for content in (gzip.compress(body), body):  # a real gzip body, and JSON labelled gzip
        r = httpx.post(
            f"{server.url}/classify",
            content=content,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
            timeout=30,
        )
        assert r.status_code == 415, r.text
        assert r.json()["accepted"] == ["identity"]
        assert r.headers["accept-encoding"] == "identity"


def test_a_key_given_twice_is_400_naming_it(server: Server) -> None:
    body = _with()[:-1] + ', "age_years": 17}'
    r = _post(server, "/classify", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid input: body: duplicate key 'age_years' in a JSON object"


def test_malformed_framing_is_answered_in_json(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP request: ")


def test_the_document_lists_the_bearer_scheme_and_every_refusal(server: Server) -> None:
    doc = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    responses = doc["paths"]["/classify"]["post"]["responses"]
    for status in ("400", "401", "405", "408", "413", "415", "429", "431", "503", "504"):
        assert status in responses, status


def test_with_batching_off_every_request_is_scored_alone_and_alike(
    server: Server, model_tag: str, applicants, tmp_path: Path
) -> None:
    """CREDIT_RISK_BATCHING=0 (the benchmark's comparison): no adaptive batching, no
    coalescing, the same answers."""
    unbatched = start_server(
        "service:CreditRiskService",
        tmp_path / "unbatched.log",
        env={"CREDIT_RISK_MODEL": model_tag, "CREDIT_RISK_BATCHING": "0"},
    )
    try:
        with ThreadPoolExecutor(8) as pool:
            alone = list(
                pool.map(
                    lambda a: httpx.post(f"{unbatched.url}/classify", json=a, timeout=30),
                    applicants[:16],
                )
            )
        batch = httpx.post(f"{unbatched.url}/classify_batch", json=applicants[:16], timeout=30)
    finally:
        stop_server(unbatched)
    reference = httpx.post(f"{server.url}/classify_batch", json=applicants[:16], timeout=30)
    assert [r.status_code for r in alone] == [200] * 16, [r.text for r in alone]
    assert batch.status_code == 200, batch.text
    want = [d["probability_of_default"] for d in reference.json()]
    assert [r.json()["probability_of_default"] for r in alone] == want
    assert [d["probability_of_default"] for d in batch.json()] == want
