"""Generated bad input: schemathesis drives the real server from its own OpenAPI document.

Every operation in `/docs.json` gets its examples, boundary (coverage) cases and FUZZ_EXAMPLES
generated cases per operation, valid and deliberately invalid. Every response must be: no 5xx;
a status, content type, headers and body the document declares; invalid data refused with
400/413/415 and valid data accepted; and every 4xx naming its cause (the field, the limit or
the media type).

    make test   # FUZZ_EXAMPLES=100: ~650 requests, well under a minute
    make fuzz   # FUZZ_EXAMPLES=2000; FUZZ_SEED / FUZZ_URL vary the cases or the target

The run is the schemathesis CLI (its pytest plugin does not work with pytest 9.2: it sets
`Function._nodeid`, which pytest no longer has). The seed is fixed, so a failure in CI replays
locally with the same FUZZ_* values; the CLI prints a curl command for each failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response

from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import example_applicant
from credit_risk.serving.workarounds.validation_errors import MAX_ERRORS_IN_MESSAGE
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
"""Generated cases per operation in the fuzzing phase (positive and negative together)."""
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "7321"))
"""Fixed so CI is reproducible; change it to explore other cases."""
FUZZ_URL = os.environ.get("FUZZ_URL", "").rstrip("/")
"""Fuzz an already-running server (e.g. `make serve`) instead of starting one."""
REQUEST_TIMEOUT_S = 30.0
"""Far above any answer the service gives; a hang shows up as a failure, not a stuck run."""

API_OPERATIONS = ("/classify", "/classify_batch", "/model_card")
DATA_REFUSALS = ("400", "413", "415")
"""What invalid data may get: validation (400), size (413), media type (415). Not 401/404/5xx."""


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> str:
    """The server under test: FUZZ_URL, or the session's real `bentoml serve`."""
    if FUZZ_URL:
        return FUZZ_URL
    return str(request.getfixturevalue("server").url)


@schemathesis.check
def names_its_cause(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx says why: a JSON `error` naming the fields, the limit or the media type."""
    status = response.status_code
    if not 400 <= status < 500:
        return None
    if status == 405:  # wrong method: Starlette's answer; the Allow header names the cure
        assert response.headers.get("allow"), "405 without an Allow header"
        return True
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, str), f"{status} without a JSON 'error' message: {response.text}"
    assert "validation error for" not in error, f"BentoML's generic message leaked: {error}"
    if status == 400 and body.get("detail"):
        for item in body["detail"][:MAX_ERRORS_IN_MESSAGE]:
            where = ".".join(str(p) for p in item["loc"]) or "body"
            assert f"{where}: " in error, f"400 message does not name {where!r}: {error}"
    elif status == 413:
        assert str(MAX_BODY_BYTES) in error, f"413 does not name the limit: {error}"
    elif status == 415:
        assert "application/json" in error, f"415 does not name the accepted type: {error}"
    else:
        assert error.strip(), f"{status} with an empty message"
    return True


def schemathesis_config(path: Path) -> Path:
    """The run's settings as a schemathesis.toml (the CLI loads our check from this module)."""
    statuses = ", ".join(f'"{s}"' for s in DATA_REFUSALS)
    path.write_text(
        f"""seed = {FUZZ_SEED}
hooks = "{__name__}"
request-timeout = {REQUEST_TIMEOUT_S}
workers = 1

[generation]
mode = "all"
max-examples = {FUZZ_EXAMPLES}
database = "none"

[checks.negative_data_rejection]
expected-statuses = [{statuses}]
""",
        encoding="utf-8",
    )
    return path


def test_generated_requests_get_documented_answers(base_url: str, tmp_path: Path) -> None:
    config = schemathesis_config(tmp_path / "schemathesis.toml")
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"]
        + ["run", f"{base_url}/docs.json", "--checks", "all"]
        + ["--report", "junit", "--report-junit-path", str(tmp_path / "fuzz-junit.xml")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    report = result.stdout[-20000:] + result.stderr[-5000:]
    assert result.returncode == 0, report
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated, report
    # the fuzzing phase alone owes FUZZ_EXAMPLES per operation; examples and coverage add more
    assert int(generated.group(1)) >= FUZZ_EXAMPLES * len(API_OPERATIONS), report
    print(report)  # figures for docs/reliability.md: cases generated, phases, time


# --- what the fuzzer found, pinned as plain regression tests ----------------------------------


def test_served_document_is_openapi_31_with_every_refusal(base_url: str) -> None:
    doc = httpx.get(f"{base_url}/docs.json", timeout=REQUEST_TIMEOUT_S).json()
    # pydantic 2 emits JSON Schema 2020-12 (e.g. numeric exclusiveMinimum): OpenAPI 3.1's dialect
    assert doc["openapi"].startswith("3.1")
    detail = doc["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array"
    for path in API_OPERATIONS:
        responses = doc["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "415"} <= set(responses), (path, sorted(responses))
    for path in ("/classify", "/classify_batch"):
        assert doc["paths"][path]["post"]["requestBody"]["required"] is True


MALFORMED_JSON = {
    "nul byte": b"\x00",
    "truncated": b'[{"age_years": ',
    "not json": b"approve me",
    "whitespace": b"   ",
    "nested too deep": b"[" * 5000,
    "5000-digit number": b"1" * 5000,
    "not utf-8": b"\xff\xfe\xfa",
}


@pytest.mark.parametrize("path", API_OPERATIONS)
@pytest.mark.parametrize("body", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
def test_malformed_json_is_400_on_every_route(base_url: str, path: str, body: bytes) -> None:
    r = httpx.post(
        f"{base_url}{path}",
        content=body,
        headers={"content-type": "application/json"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert r.status_code == 400, r.text
    assert "invalid input: body: Invalid JSON" in r.json()["error"], r.text


NOT_JSON = [
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken"),
    ("multipart/form-data", b"a=1"),
    ("application/x-www-form-urlencoded", b"age_years=35"),
    ("application/vnd.bentoml+pickle", b"\x80\x04N."),
    ("text/plain", json.dumps(example_applicant()).encode()),
]


@pytest.mark.parametrize("path", API_OPERATIONS)
@pytest.mark.parametrize(("ctype", "body"), NOT_JSON, ids=[c for c, _ in NOT_JSON])
def test_other_media_types_are_415_naming_json(
    base_url: str, path: str, ctype: str, body: bytes
) -> None:
    r = httpx.post(f"{base_url}{path}", content=body, headers={"content-type": ctype}, timeout=30)
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["error"], r.text


def test_json_with_charset_and_without_content_type_still_score(base_url: str) -> None:
    body = json.dumps(example_applicant()).encode()
    headers: dict[str, Any]
    for headers in ({"content-type": "application/json; charset=utf-8"}, {}):
        r = httpx.post(f"{base_url}/classify", content=body, headers=headers, timeout=30)
        assert r.status_code == 200, (headers, r.text)
