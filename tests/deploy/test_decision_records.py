"""Decision records outlive the pod: real servers laid out as deploy/k8s runs them.

Each server logs under `<shared volume>/${POD_NAME}`, as the manifests' BentoML config says;
the shared directory stands for the ReadWriteMany volume. Run with `-s` for the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from credit_risk.schema import example_applicant
from credit_risk.serving.decision_log import decision_log_files, read_decision_records
from tests.conftest import Server, start_server, stop_server
from tests.deploy.test_deploy import BASE, CONTAINER_NAME

pytestmark = pytest.mark.integration

DEPLOYMENT = yaml.safe_load((BASE / "deployment.yaml").read_text(encoding="utf-8"))
POD_SPEC = DEPLOYMENT["spec"]["template"]["spec"]
GRACE_S = POD_SPEC["terminationGracePeriodSeconds"]
PRE_STOP_S = 5  # the preStop sleep runs before the SIGTERM and counts against the grace period
CONFIG = yaml.safe_load((BASE / "bentoml_config.yaml").read_text(encoding="utf-8"))
LOG_PATH = Path(CONFIG["services"]["credit_risk_service"]["monitoring"]["options"]["log_path"])
APPLICANT = example_applicant()
PODS = ("credit-risk-5c8d9-aaaaa", "credit-risk-5c8d9-bbbbb")


def test_the_manifests_pre_stop_is_what_this_test_allows_for() -> None:
    (container,) = [c for c in POD_SPEC["containers"] if c["name"] == CONTAINER_NAME]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRE_STOP_S)]
    assert LOG_PATH.name == "${POD_NAME}", "one directory per pod on the shared volume"


def start_pod(model_tag: str, shared: Path, pod: str) -> Server:
    """A server logging where a pod named `pod` logs: the manifests' log path, re-rooted."""
    log_path = shared / LOG_PATH.name  # `${POD_NAME}`, expanded by BentoML as in the pod
    overrides = {
        "services": {
            "credit_risk_service": {"monitoring": {"options": {"log_path": str(log_path)}}}
        }
    }
    return start_server(
        "service:CreditRiskService",
        shared.parent / f"{pod}.log",
        env={
            "CREDIT_RISK_MODEL": model_tag,
            "POD_NAME": pod,
            "BENTOML_CONFIG_OVERRIDES": json.dumps(overrides),
        },
    )


@dataclass
class Load:
    """What clients were answered: decision ids of every 200, and the other outcomes."""

    answered: list[str] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)


async def drive(
    url: str,
    load: Load,
    until: asyncio.Event,
    clients: int = 16,
    headers: dict[str, str] | None = None,
) -> None:
    """Closed-loop clients sending single applicants and batches of 5 until `until` is set
    or the server stops accepting connections."""

    async def one(client: httpx.AsyncClient, batch: bool) -> None:
        while not until.is_set():
            try:
                if batch:
                    r = await client.post(f"{url}/classify_batch", json=[APPLICANT] * 5)
                else:
                    r = await client.post(f"{url}/classify", json=APPLICANT)
            except httpx.ConnectError:
                return  # the server no longer listens
            except httpx.TransportError as exc:
                load.other[type(exc).__name__] += 1
                continue
            if r.status_code != 200:
                load.other[str(r.status_code)] += 1
                continue
            body = r.json()
            load.answered += [d["decision_id"] for d in (body if batch else [body])]

    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        await asyncio.gather(*(one(client, batch=i % 4 == 0) for i in range(clients)))


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "decisions"
    path.mkdir()
    return path


def test_sigterm_under_load_leaves_one_record_per_answer(model_tag: str, shared: Path) -> None:
    server = start_pod(model_tag, shared, "credit-risk-5c8d9-term1")
    load = Load()
    try:

        async def scenario() -> float:
            until = asyncio.Event()
            traffic = asyncio.create_task(drive(server.url, load, until))
            await asyncio.sleep(3)
            assert load.answered, "the load is being served before the SIGTERM"
            os.kill(server.process.pid, signal.SIGTERM)  # what the kubelet and `docker stop` do
            sent = time.monotonic()
            while server.process.poll() is None and time.monotonic() - sent < GRACE_S:
                await asyncio.sleep(0.1)
            exited = time.monotonic() - sent
            until.set()
            await traffic
            return exited

        exited = asyncio.run(scenario())
        assert server.process.poll() is not None, f"still running {GRACE_S} s after SIGTERM"
    finally:
        stop_server(server)

    records = Counter(r["decision_id"] for r in read_decision_records(shared))
    answered = Counter(load.answered)
    print(
        f"\nSIGTERM under load: exited after {exited:.1f} s (status {server.process.returncode});"
        f" {len(answered)} decisions answered 200, {sum(records.values())} records, "
        f"{len(records.keys() - answered.keys())} records of unanswered requests; "
        f"other outcomes {dict(load.other)}"
    )
    assert exited <= GRACE_S - PRE_STOP_S, "the kubelet would SIGKILL it"
    assert max(answered.values()) == 1, "decision ids are unique"
    missing = [i for i in answered if records[i] != 1]
    assert not missing, f"{len(missing)} answered decisions without exactly one record"
    assert max(records.values()) == 1, "no decision is recorded twice"


@pytest.fixture
def two_pods(model_tag: str, shared: Path) -> Iterator[tuple[Server, Server]]:
    first = start_pod(model_tag, shared, PODS[0])
    try:
        second = start_pod(model_tag, shared, PODS[1])
    except Exception:
        stop_server(first)
        raise
    yield first, second
    stop_server(first)
    stop_server(second)


def test_records_of_two_pods_are_read_back_from_the_shared_volume(
    two_pods: tuple[Server, Server], shared: Path
) -> None:
    answered: dict[str, str] = {}
    for server, pod in zip(two_pods, PODS, strict=True):
        for _ in range(20):
            r = httpx.post(f"{server.url}/classify", json=APPLICANT, timeout=30)
            assert r.status_code == 200, r.text
            answered[r.json()["decision_id"]] = pod
    for server in two_pods:
        stop_server(server)  # the pods are gone; their records stay

    files = decision_log_files(shared)
    pods_with_files = {f.relative_to(shared).parts[0] for f in files}
    assert pods_with_files == set(answered.values()), "one directory per pod"
    records = list(read_decision_records(shared))
    assert sorted(r["decision_id"] for r in records) == sorted(answered)
    for pod in set(answered.values()):  # each pod's directory holds its own decisions only
        ids = {r["decision_id"] for r in read_decision_records(shared / pod)}
        assert ids == {i for i, owner in answered.items() if owner == pod}
