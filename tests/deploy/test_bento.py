"""The bento `make build` produces is complete and self-contained.

`bentoml build` runs against the isolated test store (conftest), the bundle's contents are
checked against the repository, and then the BUILT bento is served by tag from a directory
outside the repository with no PYTHONPATH, so every import must come from the bundle.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import pytest
import yaml

from credit_risk.schema import Decision, example_applicant
from tests.conftest import ROOT, SERVER_READY_TIMEOUT_S, Server, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENTO_NAME = "credit_risk_service"
SERVICE_NAMES = {"credit_risk_service", "credit_scorer"}
THREAD_PINS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)")


@dataclass(frozen=True)
class BuiltBento:
    """A bento in the test store: its tag, its directory and its bento.yaml."""

    tag: str
    path: Path
    info: dict[str, Any]


def bentoml_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run the bentoml CLI of this interpreter against the test store; return stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        cwd=cwd,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"bentoml {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def build_bento(model_tag: str, env: dict[str, str] | None = None) -> BuiltBento:
    """`bentoml build` from the repository root, as `make build` does (`env` adds to the
    build's environment)."""
    build_env = {"CREDIT_RISK_MODEL": model_tag, **(env or {})}
    output = bentoml_cli("build", ".", "--output", "tag", env=build_env)
    match = re.search(r"__tag__:(\S+)", output)
    assert match, f"no tag in build output:\n{output}"
    tag = match.group(1)
    path = Path(bentoml_cli("get", tag, "-o", "path").strip())
    info = yaml.safe_load((path / "bento.yaml").read_text(encoding="utf-8"))
    return BuiltBento(tag=tag, path=path, info=info)


def locked_pins(text: str) -> dict[str, str]:
    """name -> version for every `name==version` line of a requirements file."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.fixture(scope="session")
def bento(model_tag: str) -> BuiltBento:
    """One bento built for the session from the working tree."""
    return build_bento(model_tag)


def test_bento_is_named_for_the_api_service(bento: BuiltBento, model_tag: str) -> None:
    assert bento.tag.split(":")[0] == BENTO_NAME
    assert bento.info["service"] == "service:CreditRiskService"
    assert {s["name"] for s in bento.info["services"]} == SERVICE_NAMES
    assert bento.info["labels"]["owner"]
    assert bento.info["labels"]["stage"]


def test_bento_holds_the_sources_it_needs_and_nothing_else(bento: BuiltBento) -> None:
    src = bento.path / "src"
    packed = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "credit_risk").rglob("*.py")}
    assert package, "credit_risk package not found in the repository"
    assert {"service.py", "client.py", "README.md", *package} <= packed
    for path in packed:
        top = path.split("/")[0]
        assert top not in {"tests", "data", "deploy", "load_tests", "reports", ".venv"}, path
        assert "__pycache__" not in path
    assert (src / "service.py").read_bytes() == (ROOT / "service.py").read_bytes()
    assert (bento.path / "README.md").read_text(encoding="utf-8") == (ROOT / "README.md").read_text(
        encoding="utf-8"
    )


def test_bento_installs_exactly_the_locked_requirements(bento: BuiltBento) -> None:
    lock = locked_pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    packed = locked_pins(
        (bento.path / "env" / "python" / "requirements.txt").read_text(encoding="utf-8")
    )
    assert lock, "requirements.lock has no pins"
    assert packed == lock
    assert packed["bentoml"] == bentoml.__version__


def test_bento_records_the_trained_model(bento: BuiltBento, model_tag: str) -> None:
    # recorded by the services' own references (BentoML's `all_models`: top level + services),
    # so a pinned CREDIT_RISK_MODEL is exactly what ships, and nothing else
    recorded = {m["tag"] for m in bento.info["models"]} | {
        m["tag"] for service in bento.info["services"] for m in service.get("models", [])
    }
    assert recorded == {model_tag}
    # The model files are not in the bento; `containerize` copies them from the store.
    assert not (bento.path / "models").exists() or not any((bento.path / "models").iterdir())


def test_bento_image_pins_threads_and_python(bento: BuiltBento) -> None:
    envs = bento.info["docker"]["env"]  # the image recipe's environment
    for name in THREAD_PINS:
        assert envs[name] == "1"
    dockerfile = (bento.path / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11[-\w.]*", dockerfile, re.MULTILINE), dockerfile[:400]
    for name in THREAD_PINS:
        assert f"ENV {name}=${name}" in dockerfile
    assert "USER bentoml" in dockerfile


def test_bento_image_installs_no_compiler(bento: BuiltBento) -> None:
    # BentoML's Debian recipe would add `apt-get install ... build-essential git`; the runtime
    # image is BentoML's steps on a base with Python only (deploy/image/Dockerfile.template).
    dockerfile = (bento.path / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    for compiler in ("build-essential", "gcc", "g++", "clang", " git"):
        assert compiler not in dockerfile, compiler
    assert "apt-get install" not in dockerfile
    assert 'RUN python -m compileall -q "$BENTO_PATH/src"' in dockerfile


def test_bento_publishes_the_openapi_document(bento: BuiltBento) -> None:
    openapi = yaml.safe_load((bento.path / "apis" / "openapi.yaml").read_text(encoding="utf-8"))
    for path in ("/classify", "/classify_batch", "/model_card", "/readyz", "/livez", "/metrics"):
        assert path in openapi["paths"], path
    schemas = json.dumps(openapi["components"]["schemas"])
    for field in example_applicant():
        assert field in schemas, field


@pytest.fixture(scope="session")
def bento_server(bento: BuiltBento, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The built bento served by tag, from outside the repository, with the deploy config."""
    outside = tmp_path_factory.mktemp("outside-repo")
    config_path = ROOT / "deploy" / "k8s" / "base" / "bentoml_config.yaml"  # the pod's config
    # No PYTHONPATH, no model override, no auth: the bundle's defaults and nothing else.
    env = {
        "PYTHONPATH": "",
        "BENTOML_CONFIG": str(config_path),
        "CREDIT_RISK_MODEL": "",
        "CREDIT_RISK_API_TOKENS": "",
    }
    server = start_server(bento.tag, outside / "bento-server.log", env=env, cwd=outside)
    yield server
    stop_server(server)


def test_built_bento_serves_from_outside_the_repository(
    bento_server: Server, model_tag: str
) -> None:
    with bentoml.SyncHTTPClient(
        bento_server.url, server_ready_timeout=SERVER_READY_TIMEOUT_S
    ) as client:
        decision = Decision.model_validate(client.classify(example_applicant()))
        card = client.model_card()
    assert 0.0 <= decision.probability_of_default <= 1.0
    assert decision.model_version == model_tag
    assert card["tag"] == model_tag
