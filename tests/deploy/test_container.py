"""The OCI image runs the way the Kubernetes Deployment runs it, and answers.

Where a container engine answers `docker info`, the bento built from the working tree is
containerized and started with the pod's settings taken from deploy/k8s/base/deployment.yaml
(its user, read-only root filesystem with the same writable volumes, dropped capabilities, CPU
and memory limits, environment and mounted BentoML config). Elsewhere the module is skipped
(asked when its tests run, not when they are collected).

Image size, containerize time and docker-run-to-ready time go to reports/container-image.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest
import yaml

from credit_risk.decision_store import open_store
from credit_risk.schema import Decision, example_applicant
from load_tests import harness
from tests.conftest import ROOT, free_port
from tests.deploy.test_bento import BENTO_NAME, BuiltBento, bentoml_cli, build_bento
from tests.deploy.test_decision_records import GRACE_S, PRE_STOP_S, SERVED_FIRST, Load, drive
from tests.deploy.test_deploy import IMAGE_UID

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(2400)]

DEPLOYMENT = ROOT / "deploy" / "k8s" / "base" / "deployment.yaml"
CONFIG = ROOT / "deploy" / "k8s" / "base" / "bentoml_config.yaml"
# The shared provisioning script (see its header); `env` prints the PATH with its docker CLI.
CONTAINER_ENV = Path(os.environ.get("CONTAINER_ENV", ROOT.parent / "shared/tools/container-env.sh"))
READY_TIMEOUT_S = 180.0
"""Import of the stack plus model load, two processes, under a 2-CPU limit on a busy CI host."""
REPORT = ROOT / "reports" / "container-image.json"
MAX_IMAGE_BYTES = 500_000_000
"""The image budget in the decimal megabytes `docker images` shows (docs/deployment.md)."""


@cache
def _docker_env() -> dict[str, str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    if CONTAINER_ENV.is_file():
        out = subprocess.run(
            ["bash", "-c", f'eval "$(bash {CONTAINER_ENV} env)" && printf %s "$PATH"'],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout:
            env["PATH"] = out.stdout
    return env


@cache
def _docker() -> str | None:
    return shutil.which("docker", path=_docker_env()["PATH"])


def _engine_problem() -> str | None:
    docker_cli = _docker()
    if docker_cli is None:
        return "no docker CLI on PATH"
    try:
        out = subprocess.run(
            [docker_cli, "info", "--format", "{{.ServerVersion}}"],
            env=_docker_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no output"])[0]
        return f"`docker info` failed: {first}"
    return None


@pytest.fixture(scope="module", autouse=True)
def container_engine() -> None:
    """Skip the module where no engine answers `docker info`: asked when a container test is
    about to run, never while tests are collected."""
    problem = _engine_problem()
    if problem is not None:
        pytest.skip(f"no container engine ({problem})")


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI the engine was provisioned with."""
    docker_cli = _docker()
    assert docker_cli is not None
    out = subprocess.run(
        [docker_cli, *args],
        env=_docker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert out.returncode == 0, f"docker {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


SITE_PACKAGES = (
    "import importlib.util as u; "
    "print(*[m for m in ('sklearn', 'pandas', 'scipy', 'matplotlib') if u.find_spec(m)])"
)
"""Run in the image: the training libraries it finds (none)."""


def _cpus(quantity: str) -> str:
    return str(float(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def _bytes_flag(quantity: str) -> str:
    """Kubernetes binary quantity (Mi, Gi) -> docker's suffix (m, g)."""
    for k8s, docker_unit in (("Ki", "k"), ("Mi", "m"), ("Gi", "g")):
        if quantity.endswith(k8s):
            return quantity[: -len(k8s)] + docker_unit
    return quantity


TOKEN = "container-test-token"
"""The one bearer token in the tokens Secret the test stands in for."""
AUTH = {"authorization": f"Bearer {TOKEN}"}


def secret_dir(volume: dict[str, Any], parent: Path) -> Path:
    """A host directory standing for a mounted Secret: its key `tokens` holds `TOKEN`."""
    directory = parent / volume["secret"]["secretName"]
    directory.mkdir(exist_ok=True)
    (directory / "tokens").write_text(TOKEN + "\n")
    (directory / "tokens").chmod(0o444)
    directory.chmod(0o755)
    return directory


def pod_like_run_args(
    deployment: dict[str, Any], config_file: Path, shared_dir: Path, pod_name: str
) -> list[str]:
    """`docker run` flags that reproduce the Deployment's pod for its one container: a host
    directory stands for the persistent volume, another for the tokens Secret (holding
    `TOKEN`), `pod_name` for the pod's name."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_ctx, ctx = pod["securityContext"], container["securityContext"]
    args = ["--user", f"{pod_ctx['runAsUser']}:{pod_ctx['runAsGroup']}"]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    args += [f"--cap-drop={cap}" for cap in ctx["capabilities"]["drop"]]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    limits = container["resources"]["limits"]
    args += ["--cpus", _cpus(limits["cpu"]), "--memory", _bytes_flag(limits["memory"])]
    for env in container.get("env", []):
        if "value" in env:
            args += ["-e", f"{env['name']}={env['value']}"]
        elif env["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            args += ["-e", f"{env['name']}={pod_name}"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    env_values = {e["name"]: e.get("value") for e in container.get("env", [])}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = _bytes_flag(volume["emptyDir"]["sizeLimit"])
            owner = f"uid={pod_ctx['runAsUser']},gid={pod_ctx['fsGroup']}"
            args += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},{owner},mode=0770"]
        elif "configMap" in volume:
            target = Path(env_values["BENTOML_CONFIG"] or "")
            assert target.parent == Path(mount["mountPath"])
            args += ["-v", f"{config_file}:{target}:ro"]
        elif "secret" in volume:
            args += ["-v", f"{secret_dir(volume, shared_dir.parent)}:{mount['mountPath']}:ro"]
        elif "persistentVolumeClaim" in volume:
            shared_dir.chmod(0o777)  # the pod's user writes it, as fsGroup lets it on the claim
            args += ["-v", f"{shared_dir}:{mount['mountPath']}"]
        else:
            pytest.fail(f"volume type of {mount['name']} not reproduced under docker")
    return args


STORE_IN_CONTAINER = "/var/lib/credit-risk-decisions"


def store_on_host(shared_dir: Path) -> list[str]:
    """The decision store on a host directory, standing for the production database (the
    base's default, SQLite on an emptyDir, goes with the container), so the test reads it."""
    shared_dir.chmod(0o777)  # the image's user writes it
    url = f"sqlite:///{STORE_IN_CONTAINER}/decisions.sqlite"
    return ["-v", f"{shared_dir}:{STORE_IN_CONTAINER}", "-e", f"CREDIT_RISK_DECISION_STORE={url}"]


def stored_ids(shared_dir: Path) -> Counter[str]:
    """How often each decision id is in the store the container wrote."""
    store = open_store(f"sqlite:///{shared_dir / 'decisions.sqlite'}")
    try:
        return Counter(r.decision_id for r in store.records())
    finally:
        store.close()


@dataclass
class Running:
    """A running container of the image."""

    image: str
    container_id: str
    url: str
    seconds_to_ready: float
    name: str
    shared_dir: Path


def _wait_ready(url: str, container_id: str, started: float) -> float:
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        state = docker("inspect", "-f", "{{.State.Running}}", container_id).stdout.strip()
        if state != "true":
            pytest.fail("container exited:\n" + docker("logs", container_id).stderr[-5000:])
        time.sleep(0.1)
    logs = docker("logs", container_id, check=False)
    pytest.fail(f"not ready after {READY_TIMEOUT_S} s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


@pytest.fixture(scope="module")
def container_bento(model_tag: str) -> BuiltBento:
    """A bento built for this module (the container tests also run on their own in CI)."""
    return build_bento(model_tag)


@pytest.fixture(scope="module")
def running(
    container_bento: BuiltBento, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """Containerize the bento, start it like the pod, and remove both at the end."""
    version = container_bento.tag.split(":")[1]
    image = f"{BENTO_NAME}:test-{version}"
    started = time.monotonic()
    # from the temporary directory, as `make containerize` (BentoML reads the bento's
    # Dockerfile template from a copy there, and only below the current directory)
    tmp = Path(tempfile.gettempdir())
    bentoml_cli("containerize", container_bento.tag, "-t", image, cwd=tmp, env=_docker_env())
    containerize_s = time.monotonic() - started
    deployment = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))
    port = free_port()
    name = f"credit-risk-test-{uuid.uuid4().hex[:8]}"
    shared_dir = tmp_path_factory.mktemp("decisions")
    container_id = ""
    try:
        started = time.monotonic()
        container_id = docker(
            "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000",
            *pod_like_run_args(deployment, CONFIG, shared_dir, name),
            *store_on_host(shared_dir), image,
        ).stdout.strip()  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        seconds_to_ready = _wait_ready(url, container_id, started)
        size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout.strip())
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(
            json.dumps(
                {
                    "image": image,
                    "image_size_bytes": size,
                    "containerize_seconds": round(containerize_s, 1),
                    "docker_run_to_ready_seconds": round(seconds_to_ready, 2),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        yield Running(image, container_id, url, seconds_to_ready, name, shared_dir)
    finally:
        if container_id:
            docker("rm", "-f", container_id, check=False)
        docker("image", "rm", "-f", image, check=False)


def test_image_classifies_an_applicant(running: Running, model_tag: str) -> None:
    with bentoml.SyncHTTPClient(running.url, token=TOKEN, server_ready_timeout=30) as client:
        decision = Decision.model_validate(client.classify(example_applicant()))
    assert 0.0 <= decision.probability_of_default <= 1.0
    assert decision.model_version == model_tag


def test_image_fits_its_size_budget(running: Running) -> None:
    """The runtime lock installs no training library (scikit-learn, pandas, SciPy)."""
    size = int(docker("image", "inspect", "-f", "{{.Size}}", running.image).stdout.strip())
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB > {MAX_IMAGE_BYTES / 1e6:.0f} MB"
    out = docker("run", "--rm", "--entrypoint", "python", running.image, "-c", SITE_PACKAGES)
    assert out.stdout.split() == [], "training libraries in the image"


def test_every_process_runs_as_the_bento_user(running: Running) -> None:
    out = docker("exec", running.container_id, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status")
    uids = {int(field) for line in out.stdout.splitlines() for field in line.split()[1:]}
    assert uids == {IMAGE_UID}, out.stdout


def test_root_filesystem_is_read_only(running: Running) -> None:
    out = docker("exec", running.container_id, "touch", "/home/bentoml/bento/probe", check=False)
    assert out.returncode != 0
    assert "Read-only file system" in out.stderr


def test_a_decision_is_stored_and_found_again(running: Running) -> None:
    with bentoml.SyncHTTPClient(running.url, token=TOKEN, server_ready_timeout=30) as client:
        decision = client.classify(example_applicant())
    assert decision["decision_id"] in stored_ids(running.shared_dir), "outside the container"
    found = httpx.get(
        f"{running.url}/decisions/{decision['decision_id']}", headers=AUTH, timeout=10
    )
    assert found.status_code == 200
    assert found.json()["outputs"]["decision"] == decision["decision"]


def test_metrics_are_exposed_for_scraping(running: Running) -> None:
    with bentoml.SyncHTTPClient(running.url, token=TOKEN, server_ready_timeout=30) as client:
        client.classify(example_applicant())
    response = httpx.get(f"{running.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert "bentoml_service_request_duration_seconds" in response.text
    assert 'endpoint="/classify"' in response.text


def test_docker_stop_under_load_leaves_one_record_per_answer(running: Running) -> None:
    """Last in this module: it stops the container. `docker stop` sends the SIGTERM the
    kubelet sends, with the grace period the manifests leave after their preStop sleep."""
    load = Load()

    async def scenario() -> None:
        until = asyncio.Event()
        traffic = asyncio.create_task(drive(running.url, load, until, headers=AUTH))
        # requests in flight at every stage when it comes: the load is served first
        await harness.until(
            lambda: len(load.answered) >= SERVED_FIRST, "the load is served before the stop"
        )
        await asyncio.to_thread(
            docker, "stop", "-t", str(GRACE_S - PRE_STOP_S), running.container_id
        )
        until.set()
        await traffic

    asyncio.run(scenario())
    exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", running.container_id)
    records = stored_ids(running.shared_dir)
    answered = Counter(load.answered)
    print(
        f"\ndocker stop under load: exit code {exit_code.stdout.strip()}; {len(answered)} "
        f"decisions answered 200, {sum(records.values())} records; other {dict(load.other)}"
    )
    assert exit_code.stdout.strip() == "0", "stopped by its SIGTERM, not killed after the grace"
    assert all(records[i] == 1 for i in answered), "one record per answered decision"
    assert max(records.values()) == 1
