"""Supply chain and secrets: the locked dependencies have no known vulnerability that applies,
and the built bento carries no secret, token, local path or working-tree debris.

The audit asks PyPI's vulnerability data for every pin in requirements.lock (`make audit` runs
just this). Findings that do not apply are listed, each with its reason, in audit-allowlist.txt.
Where the vulnerability service cannot be reached the audit is skipped and says so: an audit
that checked nothing must never pass as clean.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TEST_HOME
from tests.deploy.test_bento import bentoml_cli, build_bento, locked_pins

LOCK_FILE = ROOT / "requirements.lock"
ALLOWLIST = ROOT / "audit-allowlist.txt"
AUDIT_TIMEOUT_S = 600
"""~90 pins, one PyPI request each; generous for a slow network."""
_ENTRY = re.compile(r"^(?P<id>[A-Z]+-[\w.:-]+)\s+(?P<reason>\S.*)$")


def read_allowlist(path: Path = ALLOWLIST) -> dict[str, str]:
    """Advisory ID -> the reason it does not apply; refuses entries without a reason."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENTRY.match(line)
        assert match, f"{path.name}:{number}: expected 'ADVISORY-ID  reason', got {line!r}"
        assert match["id"] not in entries, f"{path.name}:{number}: {match['id']} listed twice"
        entries[match["id"]] = match["reason"]
    return entries


def test_allowlist_entries_each_give_a_reason() -> None:
    entries = read_allowlist()
    for vuln_id, reason in entries.items():
        assert len(reason.split()) >= 3, f"{vuln_id}: say why it does not apply, not {reason!r}"


@dataclass(frozen=True)
class Finding:
    """One advisory pip-audit reports against one pinned package."""

    package: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def __str__(self) -> str:
        fix = ", ".join(self.fix_versions) or "no fixed release yet"
        return f"{self.package}=={self.version}: {self.vuln_id} (fixed in: {fix})"


def run_pip_audit(lock_file: Path) -> dict[str, object]:
    """pip-audit over the pins as written (no resolution, no pip), PyPI as the data source."""
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "-r", str(lock_file), "--no-deps", "--disable-pip"]
        + ["--vulnerability-service", "pypi", "--progress-spinner", "off", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
        check=False,
    )
    # exit 1 means "vulnerabilities found" and still prints the report; anything else is an error
    if result.returncode not in (0, 1) or not result.stdout.strip():
        if re.search(r"connection|resolve|timed? ?out|network", result.stderr, re.IGNORECASE):
            pytest.skip(f"vulnerability service unreachable: {result.stderr.strip()[-300:]}")
        pytest.fail(f"pip-audit failed ({result.returncode}):\n{result.stderr[-3000:]}")
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_locked_dependencies_have_no_known_vulnerabilities() -> None:
    report = run_pip_audit(LOCK_FILE)
    dependencies = report["dependencies"]
    assert isinstance(dependencies, list)
    unaudited = [d for d in dependencies if "skip_reason" in d]
    if len(unaudited) == len(dependencies):
        pytest.skip(
            f"pip-audit could audit none of the {len(dependencies)} pins: PyPI's vulnerability "
            f"data is unreachable from here (e.g. {unaudited[0]['skip_reason']!r})"
        )
    assert not unaudited, "not audited: " + "; ".join(
        f"{d['name']}: {d['skip_reason']}" for d in unaudited
    )
    findings = [
        Finding(
            package=d["name"],
            version=d["version"],
            vuln_id=v["id"],
            aliases=tuple(v.get("aliases", ())),
            fix_versions=tuple(v.get("fix_versions", ())),
        )
        for d in dependencies
        for v in d.get("vulns", [])
    ]
    allowed = read_allowlist()
    applies = [f for f in findings if not {f.vuln_id, *f.aliases} & allowed.keys()]
    assert not applies, (
        "known vulnerabilities in shipped dependencies (raise the floor in pyproject.toml, "
        "then `make lock`; list one in audit-allowlist.txt only if it cannot apply):\n"
        + "\n".join(str(f) for f in applies)
    )
    reported = {i for f in findings for i in (f.vuln_id, *f.aliases)}
    stale = sorted(allowed.keys() - reported)
    assert not stale, f"audit-allowlist.txt lists advisories no longer reported: {stale}"


PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
"""PyPI's project endpoint: its `vulnerabilities` are the advisories that affect the project's
latest release. (pip-audit asks the per-release endpoint, which some networks do not reach.)"""
PYPI_TIMEOUT_S = 30


def _latest_on_pypi(name: str) -> tuple[str, list[dict[str, object]]] | Exception:
    """(latest release, advisories affecting it) from PyPI's project JSON, or why not (one
    retry: a single dropped connection or rate-limit answer is not a verdict)."""
    failure: Exception = RuntimeError("not asked")
    for _ in range(2):
        try:
            url = PYPI_PROJECT_JSON.format(name=name)
            with urllib.request.urlopen(url, timeout=PYPI_TIMEOUT_S) as response:
                data = json.load(response)
            return str(data["info"]["version"]), list(data.get("vulnerabilities") or [])
        except (OSError, ValueError) as exc:  # URLError, HTTPError, resets, bad JSON
            failure = exc
    return failure


def test_pins_that_are_the_latest_release_have_no_advisories_on_pypi() -> None:
    # An audit that needs less of the network than pip-audit: for every pin that is its
    # project's latest release, PyPI's project page lists exactly the advisories against it.
    # Pins behind the latest release are not covered here (only pip-audit can), and are named.
    pins = sorted(locked_pins(LOCK_FILE.read_text(encoding="utf-8")).items())
    assert len(pins) > 50, f"read only {len(pins)} pins from {LOCK_FILE.name}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(pins, pool.map(lambda pin: _latest_on_pypi(pin[0]), pins), strict=True))
    failed = {pin: a for pin, a in answers.items() if isinstance(a, Exception)}
    if len(failed) == len(pins):
        pytest.skip(f"PyPI's project JSON unreachable: {next(iter(failed.values()))}")
    assert not failed, "could not audit: " + "; ".join(f"{n}: {e}" for (n, _), e in failed.items())
    latest = {pin: a for pin, a in answers.items() if not isinstance(a, Exception)}
    findings = [
        Finding(
            package=name,
            version=version,
            vuln_id=str(v["id"]),
            aliases=tuple(map(str, v.get("aliases") or ())),
            fix_versions=tuple(map(str, v.get("fixed_in") or ())),
        )
        for (name, version), (newest, vulns) in latest.items()
        if version == newest
        for v in vulns
        if not v.get("withdrawn")
    ]
    allowed = read_allowlist()
    applies = [f for f in findings if not {f.vuln_id, *f.aliases} & allowed.keys()]
    assert not applies, "known vulnerabilities in shipped dependencies:\n" + "\n".join(
        str(f) for f in applies
    )
    behind = [f"{n}=={v} (latest {latest[(n, v)][0]})" for n, v in pins if v != latest[(n, v)][0]]
    if behind:
        warnings.warn(
            f"{len(pins) - len(behind)} of {len(pins)} pins audited against PyPI's advisories; "
            f"not covered (behind their latest release, for pip-audit): {', '.join(behind)}",
            stacklevel=1,
        )


# --- the built bento --------------------------------------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(rb"(?i)aws_secret_access_key\s*[=:]"),
    "GitHub token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "bearer token in text": re.compile(rb"(?i)authorization:\s*bearer\s+[A-Za-z0-9._~+/-]{16,}"),
}
"""Well-known credential shapes; none may appear anywhere in what ships."""

WORKING_TREE_ONLY = {".venv", "tests", "data", "reports", "load_tests", "__pycache__"}
"""Top-level or nested directories that exist only in a developer's checkout."""


@dataclass(frozen=True)
class CanaryBento:
    """A bento built while a canary API token was set in the build environment."""

    path: Path
    token: str
    model_paths: tuple[Path, ...]


@pytest.fixture(scope="module")
def canary_bento(model_tag: str) -> CanaryBento:
    """`bentoml build` as `make build` runs it, with a secret the bento must not capture."""
    token = f"canary-{uuid.uuid4().hex}"
    built = build_bento(model_tag, env={"CREDIT_RISK_API_TOKENS": token})
    # the model files are not in the bento but `containerize` copies them into the image
    tags = {m["tag"] for m in built.info["models"]} | {
        m["tag"] for service in built.info["services"] for m in service.get("models", [])
    }  # BentoML's `all_models`: what containerize copies
    models = tuple(
        Path(bentoml_cli("models", "get", tag, "-o", "path").strip()) for tag in sorted(tags)
    )
    return CanaryBento(path=built.path, token=token, model_paths=models)


def _shipped_files(bento: CanaryBento) -> list[Path]:
    roots = (bento.path, *bento.model_paths)
    return [p for root in roots for p in sorted(root.rglob("*")) if p.is_file()]


def _local_paths() -> dict[str, bytes]:
    paths = {"repository": ROOT, "test model store": TEST_HOME, "interpreter": Path(sys.prefix)}
    home = os.environ.get("HOME", "")
    if len(home) > 1:
        paths["home directory"] = Path(home)
    return {name: str(p).encode() for name, p in paths.items()}


@pytest.mark.integration
@pytest.mark.slow
def test_bento_and_its_models_hold_no_secrets_or_local_paths(canary_bento: CanaryBento) -> None:
    files = _shipped_files(canary_bento)
    assert any(p.name == "bento.yaml" for p in files)
    assert any(p.suffix == ".joblib" for p in files), (
        f"the served model is part of the image: models {canary_bento.model_paths}"
    )
    token = canary_bento.token.encode()
    local = _local_paths()
    problems = []
    for path in files:
        content = path.read_bytes()
        if token in content:
            problems.append(f"{path}: the API token set at build time")
        problems += [
            f"{path}: {kind}" for kind, rx in SECRET_PATTERNS.items() if rx.search(content)
        ]
        problems += [
            f"{path}: local path of the {kind}" for kind, p in local.items() if p in content
        ]
    assert not problems, "\n".join(problems)


@pytest.mark.integration
@pytest.mark.slow
def test_bento_holds_no_working_tree_debris(canary_bento: CanaryBento) -> None:
    packed = [p.relative_to(canary_bento.path) for p in canary_bento.path.rglob("*") if p.is_file()]
    debris = [
        p.as_posix()
        for p in packed
        if any(part in WORKING_TREE_ONLY or part.startswith(".") for part in p.parts)
        or p.suffix in {".pem", ".key", ".p12", ".env"}
        or p.name in {".env", "id_rsa", "id_ed25519", ".netrc", ".pypirc"}
    ]
    assert not debris, f"files from the developer's checkout in the bento: {debris}"


@pytest.mark.integration
@pytest.mark.slow
def test_bento_declares_no_secret_environment(canary_bento: CanaryBento) -> None:
    info = yaml.safe_load((canary_bento.path / "bento.yaml").read_text(encoding="utf-8"))
    names = [e["name"] for e in info.get("envs") or []]
    secretish = [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", n, re.I)]
    assert not secretish, f"bento.yaml bakes in secret-looking variables: {secretish}"
