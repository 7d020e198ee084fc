"""The lender's application reference and retrieval, against a real server with auth on:
`application_id` on /classify and per row on /classify_batch, echoed and stored, and
`GET /decisions/{id}` and `GET /decisions?application_id=...` behind the API token."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from credit_risk.schema import FEATURES, example_applicant
from load_tests.harness import wait_for
from tests.conftest import Server, serving

pytestmark = pytest.mark.integration

TOKEN = "token-retrieval"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def secured(model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with auth on and its decision store in its own home."""
    with serving(tmp_path_factory.mktemp("retrieval"), model_tag, tokens=TOKEN) as srv:
        yield srv


def _classify(server: Server, body: object, path: str = "/classify") -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=AUTH, timeout=30)


def _get(server: Server, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]


def test_a_decision_comes_back_by_its_id_with_inputs_outputs_reasons_and_versions(
    secured: Server,
) -> None:
    applicant = example_applicant() | {"credit_amount": 15_000.0, "duration_months": 60}
    answer = _classify(secured, applicant | {"application_id": "loan-2026-000123"}).json()
    assert answer["application_id"] == "loan-2026-000123"
    r = _get(secured, f"/decisions/{answer['decision_id']}", headers=AUTH)
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["decision_id"] == answer["decision_id"]
    assert record["application_id"] == "loan-2026-000123"
    assert record["inputs"] == applicant
    assert list(record["inputs"]) == list(FEATURES)
    for name in ("probability_of_default", "score", "risk_band", "decision", "threshold"):
        assert record["outputs"][name] == answer[name], name
    assert answer["reason_codes"], "a decline with reasons"
    assert record["reasons"] == answer["reason_codes"]  # the reasons in words, with points
    assert record["model_version"] == answer["model_version"]
    assert record["policy_version"].startswith("policy:")
    assert record["integrity"]["record_hash"]


def test_the_reference_is_no_model_input(secured: Server) -> None:
    plain = _classify(secured, example_applicant()).json()
    with_ref = _classify(secured, example_applicant() | {"application_id": "A.b_c:d-9"}).json()
    assert plain["application_id"] is None
    assert with_ref["probability_of_default"] == plain["probability_of_default"]
    assert with_ref["reason_codes"] == plain["reason_codes"]


def test_every_decision_for_one_reference_is_listed_repeats_included(secured: Server) -> None:
    ref = "app-77"
    first = _classify(secured, example_applicant() | {"application_id": ref}).json()
    rows = [example_applicant() | {"application_id": ref}, example_applicant()]
    batch = _classify(secured, rows, "/classify_batch").json()
    assert [d["application_id"] for d in batch] == [ref, None]
    r = _get(secured, "/decisions", params={"application_id": ref}, headers=AUTH)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["application_id"] == ref
    ids = [d["decision_id"] for d in listed["decisions"]]
    assert sorted(ids) == sorted([first["decision_id"], batch[0]["decision_id"]])
    empty = _get(secured, "/decisions", params={"application_id": "never-used"}, headers=AUTH)
    assert (empty.status_code, empty.json()["decisions"]) == (200, [])


@pytest.mark.parametrize("ref", ["", "x" * 65, "has space", "ünïcode", "a/b", 42])
def test_a_malformed_reference_is_400_naming_the_field(secured: Server, ref: object) -> None:
    r = _classify(secured, example_applicant() | {"application_id": ref})
    assert r.status_code == 400, r.text
    assert "application_id" in r.text
    batch = _classify(
        secured,
        [example_applicant(), example_applicant() | {"application_id": ref}],
        "/classify_batch",
    )
    assert batch.status_code == 400
    assert "application_id" in batch.text


def test_retrieval_needs_the_token(secured: Server) -> None:
    for path in ("/decisions/" + "0" * 32, "/decisions?application_id=x"):
        r = _get(secured, path)
        assert r.status_code == 401, path
        wrong = _get(secured, path, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401, path


def test_unknown_and_malformed_lookups_answer_json(secured: Server) -> None:
    unknown = _get(secured, "/decisions/" + "a" * 32, headers=AUTH)
    assert unknown.status_code == 404
    assert "no decision" in unknown.json()["error"]
    for path in ("/decisions/not-an-id", "/decisions/" + "A" * 32):
        malformed = _get(secured, path, headers=AUTH)
        assert malformed.status_code == 400, path
        assert "decision_id" in malformed.json()["error"]
    bare = _get(secured, "/decisions", headers=AUTH, follow_redirects=True)
    assert bare.status_code == 400
    assert "application_id" in bare.json()["error"]
    bad_ref = _get(secured, "/decisions", params={"application_id": "a b"}, headers=AUTH)
    assert bad_ref.status_code == 400


def test_the_openapi_document_describes_the_reference(secured: Server) -> None:
    doc = _get(secured, "/docs.json").json()
    text = str(doc)
    assert "application_id" in text
    assert "Not used for scoring" in text


def _declined(server: Server, ref: str = "loan-2026-000456") -> dict[str, object]:
    applicant = example_applicant() | {"credit_amount": 15_000.0, "duration_months": 60}
    answer: dict[str, object] = _classify(server, applicant | {"application_id": ref}).json()
    assert answer["decision"] == "decline", answer
    return answer


def test_a_declines_notice_is_printable_html_behind_the_token(secured: Server) -> None:
    answer = _declined(secured)
    path = f"/decisions/{answer['decision_id']}/notice"
    r = _get(secured, path, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "Notice of credit decision" in r.text
    assert str(answer["decision_id"]) in r.text
    assert "loan-2026-000456" in r.text
    for reason in answer["reason_codes"]:  # type: ignore[attr-defined]
        assert reason["description"] in r.text
    assert _get(secured, path).status_code == 401
    assert _get(secured, path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_a_notice_is_refused_in_json_for_approved_unknown_and_malformed_ids(
    secured: Server,
) -> None:
    declined = _classify(secured, example_applicant()).json()
    recourse = declined["recourse"]
    assert recourse, declined
    assert recourse["found"], declined  # and what it names is approved
    asked = {k: recourse[k] for k in ("credit_amount", "duration_months")}
    approved = _classify(secured, example_applicant() | asked).json()
    assert approved["decision"] == "approve"
    r = _get(secured, f"/decisions/{approved['decision_id']}/notice", headers=AUTH)
    assert r.status_code == 409
    assert "not a decline" in r.json()["error"]
    unknown = _get(secured, f"/decisions/{'b' * 32}/notice", headers=AUTH)
    assert (unknown.status_code, "no decision" in unknown.json()["error"]) == (404, True)
    malformed = _get(secured, "/decisions/not-an-id/notice", headers=AUTH)
    assert (malformed.status_code, "decision_id" in malformed.json()["error"]) == (400, True)
    beyond = _get(secured, f"/decisions/{'b' * 32}/other", headers=AUTH)
    assert (beyond.status_code, "no such route" in beyond.json()["error"]) == (404, True)


ROUTE_LABEL = "/decisions/*"
"""The one label every request under /decisions/<id> is counted under."""


def _metric_lines(server: Server) -> list[str]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return [line for line in text.splitlines() if not line.startswith("#")]


def _counted(lines: list[str], metric: str, label: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(metric + "{") and label in line
    )


def test_lookups_and_notices_add_no_metric_series_per_id(secured: Server) -> None:
    declined = str(_declined(secured, "loan-metrics")["decision_id"])
    ids = [secrets.token_hex(16) for _ in range(20)]
    _metric_lines(secured)  # the scrape itself is counted (route /metrics) once it is answered
    before = _metric_lines(secured)
    for decision_id in [*ids, declined]:
        expected = 200 if decision_id == declined else 404
        for suffix in ("", "/notice"):
            r = _get(secured, f"/decisions/{decision_id}{suffix}", headers=AUTH)
            assert r.status_code == expected, r.text
    requests = 2 * (len(ids) + 1)
    ours, theirs = "credit_risk_http_requests_total", "bentoml_service_request_total"
    ours_label, their_label = f'route="{ROUTE_LABEL}"', f'endpoint="{ROUTE_LABEL}"'

    def counted() -> bool:
        grew = _counted(_metric_lines(secured), ours, ours_label)
        return grew - _counted(before, ours, ours_label) >= requests

    wait_for(counted, f"{requests} requests counted under {ROUTE_LABEL}", timeout=30)
    after = _metric_lines(secured)
    print(f"\n/metrics series: {len(before)} before {requests} lookups, {len(after)} after")
    leaked = [line for line in after if any(i in line for i in [*ids, declined])]
    assert leaked == [], f"{len(leaked)} series name a decision id"
    assert _counted(after, theirs, their_label) - _counted(before, theirs, their_label) == (
        requests
    ), "BentoML's request metrics count them under the route label"


def test_the_officer_is_stored_per_row_not_echoed_and_limited_like_the_reference(
    secured: Server,
) -> None:
    rows = [
        example_applicant() | {"application_id": "app-o1", "officer_id": "officer.a@bank"},
        example_applicant() | {"application_id": "app-o1"},
    ]
    batch = _classify(secured, rows, "/classify_batch").json()
    assert all("officer_id" not in d for d in batch), "the answer does not echo the officer"
    listed = _get(secured, "/decisions", params={"application_id": "app-o1"}, headers=AUTH)
    officers = {d["decision_id"]: d["officer_id"] for d in listed.json()["decisions"]}
    assert officers == {batch[0]["decision_id"]: "officer.a@bank", batch[1]["decision_id"]: None}
    for bad in ("", "x" * 65, "has space", 7):
        r = _classify(secured, example_applicant() | {"officer_id": bad})
        assert r.status_code == 400, bad
        assert r.json()["detail"][0]["loc"] == ["officer_id"]


def test_the_openapi_document_describes_the_officer_and_the_class_fields(secured: Server) -> None:
    text = str(_get(secured, "/docs.json").json())
    assert "officer_id" in text
    assert "35 % or more" in text
    assert "7 years or more" in text
