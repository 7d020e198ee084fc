"""Decision records outlive the pod: real servers stopped as Kubernetes stops them, and two
"pods" writing to one PostgreSQL database as the production overlay runs them.

Run with `-s` for the figures.
"""

from __future__ import annotations

import asyncio
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

from credit_risk.decision_store import open_store
from credit_risk.decision_store.chain import verify
from credit_risk.schema import example_applicant
from load_tests import harness
from tests.conftest import Server, start_server, stop_server
from tests.deploy.test_deploy import BASE, CONTAINER_NAME
from tests.postgres import Postgres, start_postgres

pytestmark = pytest.mark.integration

DEPLOYMENT = yaml.safe_load((BASE / "deployment.yaml").read_text(encoding="utf-8"))
POD_SPEC = DEPLOYMENT["spec"]["template"]["spec"]
GRACE_S = POD_SPEC["terminationGracePeriodSeconds"]
PRE_STOP_S = 5  # the preStop sleep runs before the SIGTERM and counts against the grace period
SERVED_FIRST = 50
"""Decisions the load gets before the pod is stopped, so it is stopped mid-load."""
APPLICANT = example_applicant()
PODS = ("credit-risk-5c8d9-aaaaa", "credit-risk-5c8d9-bbbbb")


def test_the_manifests_pre_stop_is_what_this_test_allows_for() -> None:
    (container,) = [c for c in POD_SPEC["containers"] if c["name"] == CONTAINER_NAME]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRE_STOP_S)]


def start_pod(model_tag: str, store_url: str, logs: Path, pod: str) -> Server:
    """A server writing its decisions to the store at `store_url`, as a pod does."""
    return start_server(
        "service:CreditRiskService",
        logs / f"{pod}.log",
        env={"CREDIT_RISK_MODEL": model_tag, "CREDIT_RISK_DECISION_STORE": store_url},
    )


def stored_ids(store_url: str) -> Counter[str]:
    """How often each decision id is in the store."""
    store = open_store(store_url)
    try:
        return Counter(r.decision_id for r in store.records())
    finally:
        store.close()


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


def test_sigterm_under_load_leaves_one_record_per_answer(model_tag: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    server = start_pod(model_tag, store_url, tmp_path, "credit-risk-5c8d9-term1")
    load = Load()
    try:

        async def scenario() -> float:
            until = asyncio.Event()
            traffic = asyncio.create_task(drive(server.url, load, until))
            # requests in flight at every stage when it comes: the load is served first
            await harness.until(
                lambda: len(load.answered) >= SERVED_FIRST, "the load is served before the SIGTERM"
            )
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

    records = stored_ids(store_url)
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


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server standing for the production database."""
    yield from start_postgres()


@dataclass
class Pods:
    """Servers sharing one database."""

    store_url: str
    servers: tuple[Server, Server]


@pytest.fixture
def two_pods(model_tag: str, postgres: Postgres, tmp_path: Path) -> Iterator[Pods]:
    """Two servers writing to one database, as the production overlay's pods do."""
    store_url = postgres.create_database()
    first = start_pod(model_tag, store_url, tmp_path, PODS[0])
    try:
        second = start_pod(model_tag, store_url, tmp_path, PODS[1])
    except Exception:
        stop_server(first)
        raise
    yield Pods(store_url, (first, second))
    stop_server(first)
    stop_server(second)


def test_records_of_two_pods_outlive_them_in_one_database(two_pods: Pods) -> None:
    answered: dict[str, str] = {}
    for server, pod in zip(two_pods.servers, PODS, strict=True):
        for _ in range(20):
            r = httpx.post(f"{server.url}/classify", json=APPLICANT, timeout=30)
            assert r.status_code == 200, r.text
            answered[r.json()["decision_id"]] = pod
    for server in two_pods.servers:
        stop_server(server)  # the pods are gone; their records stay
    assert sorted(stored_ids(two_pods.store_url)) == sorted(answered)
    store = open_store(two_pods.store_url)
    try:
        result = verify(store)
    finally:
        store.close()
    assert result.problems == []
    assert result.writers >= 2, "each API worker process that decided keeps its own chain"
