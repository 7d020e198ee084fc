"""The dashboard and the alerts against a real Prometheus scraping a real server.

Debian's `prometheus` scrapes `bentoml serve` (champion, challenger in shadow, tokens on, a small
drift window) every second, with the target labels the prometheus-operator's ServiceMonitor
gives (`namespace`, `pod`, `endpoint`, honoured labels) and the generated rules file loaded.
After approvals, declines and refusals, every query of every dashboard panel returns data; every
rule evaluates; the worker processes' own metrics match the real processes; and a runner killed
with SIGKILL fires CreditRiskRunnerRestarted. `-s` prints one line per query with its value.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from credit_risk.monitoring.dashboard import dashboard
from credit_risk.monitoring.files import RULES_FILE
from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.schema import example_applicant
from load_tests import harness
from load_tests.applicants import sample_applicants
from tests.conftest import ROOT, Server, free_port, service_workers, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None:
    pytest.skip(
        "prometheus not on PATH (Debian: apt-get install prometheus; .ci/run installs it)",
        allow_module_level=True,
    )

TOKEN = "monitoring-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
DRIFT_WINDOW = 40
JOB, NAMESPACE, POD = "credit-risk", "credit-risk-test", "credit-risk-0"
WINDOWS = {"$__rate_interval": "2m", "$__range": "10m"}
"""What Grafana would put in for its range variables: wide enough to hold all the traffic."""
WAIT_S = 90.0
"""Generous deadline for conditions (a scrape, a refresh, a restart) on a busy 2-core host."""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Prometheus:
    """A running Prometheus on a loopback port."""

    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = r.json()
        assert r.status_code == 200, f"{expr}\n{body}"
        assert body["status"] == "success", f"{expr}\n{body}"
        return list(body["data"]["result"])

    def api(self, path: str, **params: str) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["data"]


@pytest.fixture(scope="module")
def server(
    model_tag: str, challenger_tag: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving(
        tmp_path_factory.mktemp("monitored"),
        model_tag,
        tokens=TOKEN,
        CREDIT_RISK_CHALLENGER=challenger_tag,
        CREDIT_RISK_DRIFT_WINDOW=str(DRIFT_WINDOW),
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def prometheus(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping `server` every second, with the alert rules loaded."""
    assert PROMETHEUS is not None
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "monitoring" / RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": JOB,
                # as the ServiceMonitor asks: BentoML's own `endpoint` label (the route) wins
                # over the operator's target label `endpoint` (the port name)
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [server.url.removeprefix("http://")],
                        "labels": {"namespace": NAMESPACE, "pod": POD, "endpoint": "http"},
                    }
                ],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        assert process.poll() is None, (workdir / "prometheus.log").read_text()
        try:
            return httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, "Prometheus to be ready")
    yield prom
    process.terminate()
    process.wait(timeout=30)


def _samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _worker_values(server: Server, name: str) -> dict[tuple[str, str], float]:
    return {
        (labels["service_name"], labels["worker_index"]): value
        for (sample, label_set), value in _samples(server).items()
        if sample == name
        for labels in (dict(label_set),)
    }


def _send_traffic(server: Server, applicants: list[dict[str, Any]]) -> dict[int, int]:
    """Singles and a batch with the token, then refusals of each kind; statuses counted."""
    statuses: dict[int, int] = {}

    def post(path: str, **kwargs: Any) -> None:
        r = httpx.post(f"{server.url}{path}", timeout=30, **kwargs)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    half = len(applicants) // 2
    for a in applicants[:half]:
        post("/classify", json=a, headers=AUTH)
    post("/classify_batch", json=applicants[half:], headers=AUTH)
    post("/classify", json={**example_applicant(), "age_years": 5}, headers=AUTH)  # 400
    post("/classify", json=example_applicant())  # 401
    post(
        "/classify",
        content=b" " * (MAX_BODY_BYTES + 1),
        headers={**AUTH, "content-type": "application/json"},
    )  # 413
    form = {**AUTH, "content-type": "application/x-www-form-urlencoded"}
    post("/classify", content=b"age_years=35", headers=form)  # 415
    return statuses


@pytest.fixture(scope="module")
def scraped(server: Server, prometheus: Prometheus) -> dict[int, int]:
    """Two rounds of traffic, each scraped before the next, so every rate has an increase."""
    statuses: dict[int, int] = {}
    for seed in (1, 2):
        for status, n in _send_traffic(server, sample_applicants(DRIFT_WINDOW, seed=seed)).items():
            statuses[status] = statuses.get(status, 0) + n
        sent = time.time()

        def scraped_since(sent: float = sent) -> bool:
            """A scrape began after the last answer: it holds every count of this round."""
            result = prometheus.query(f'timestamp(up{{job="{JOB}"}})')
            return bool(result) and float(result[0]["value"][1]) > sent

        wait_for(scraped_since, "Prometheus to scrape after the traffic")
    assert statuses[200] == 2 * (DRIFT_WINDOW // 2 + 1), statuses
    assert {400, 401, 413, 415} <= set(statuses), statuses
    return statuses


def _panel_queries() -> list[tuple[str, str]]:
    """(panel title, query) for every target of every panel, with Grafana's variables set."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in {
                **WINDOWS,
                "$namespace": NAMESPACE,
                "$job": JOB,
            }.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            found.append((panel["title"], expr))
    return found


def _shown(result: list[dict[str, Any]]) -> str:
    parts = []
    for series in result:
        labels = {k: v for k, v in series["metric"].items() if k not in {"namespace", "job"}}
        value = float(series["value"][1])
        parts.append(f"{','.join(f'{k}={v}' for k, v in labels.items()) or '-'}: {value:.4g}")
    return "; ".join(parts)


def test_worker_processes_publish_their_own_process_metrics(server: Server) -> None:
    """CPU, memory, descriptors and start time per worker, each the real process's own."""
    roles = harness.roles(server.root).items()  # found by their argv, as the load tools do
    processes = {tuple(r.split(":")): psutil.Process(p) for p, r in roles if r != "supervisor"}
    assert set(processes) == service_workers()

    def every_worker_started() -> dict[tuple[str, str], float]:
        # /readyz answers once one API worker is up; the other may still be starting
        started = _worker_values(server, "process_start_time_seconds")
        return started if set(started) == service_workers() else {}

    started = wait_for(every_worker_started, "every worker to publish its start time")
    for worker, process in processes.items():
        assert started[worker] == pytest.approx(process.create_time(), abs=0.05), worker
    rss = _worker_values(server, "process_resident_memory_bytes")
    fds = _worker_values(server, "process_open_fds")
    limits = _worker_values(server, "process_max_fds")
    for worker in service_workers():
        assert 20 * 2**20 < rss[worker] < 2 * 2**30, worker
        assert 0 < fds[worker] < limits[worker], worker
    print("process metrics:", json.dumps({"/".join(w): rss[w] for w in sorted(service_workers())}))

    before = _worker_values(server, "process_cpu_seconds_total")
    assert set(before) == service_workers()
    assert all(v > 0 for v in before.values())
    applicants = sample_applicants(200, seed=5)
    for _ in range(3):
        r = httpx.post(f"{server.url}/classify_batch", json=applicants, headers=AUTH, timeout=30)
        assert r.status_code == 200

    def grew() -> bool:
        after = _worker_values(server, "process_cpu_seconds_total")
        return all(after[w] > before[w] for w in service_workers())

    wait_for(grew, "every worker's CPU counter to grow")


def test_every_dashboard_query_returns_data(
    prometheus: Prometheus, scraped: dict[int, int]
) -> None:
    print(f"\ntraffic: {scraped}")
    for title, expr in _panel_queries():
        result = prometheus.query(expr)
        print(f"[{title}] {' '.join(expr.split())}\n    => {_shown(result)}")
        assert result, f"{title}: no data for {expr}"
        values = [float(s["value"][1]) for s in result]
        assert any(math.isfinite(v) for v in values), f"{title}: only NaN for {expr}"
    approvals = prometheus.query(f'credit_risk_decisions_total{{job="{JOB}"}} > 0')
    assert {s["metric"]["decision"] for s in approvals} == {"approve", "decline"}
    refusals = prometheus.query(
        f'sum by (reason) (rate(credit_risk_rejected_requests_total{{job="{JOB}"}}[2m])) > 0'
    )
    assert {s["metric"]["reason"] for s in refusals} >= {"validation", "auth", "size", "media_type"}


def test_the_dashboard_variables_find_the_deployment(
    prometheus: Prometheus, scraped: dict[int, int]
) -> None:
    for label, value in (("namespace", NAMESPACE), ("job", JOB)):
        values = prometheus.api(f"label/{label}/values", **{"match[]": "credit_risk_model_info"})
        assert value in values, (label, values)


def test_every_rule_evaluates_against_the_real_series(
    prometheus: Prometheus, scraped: dict[int, int]
) -> None:
    expected = {
        r["alert"]
        for r in yaml.safe_load(
            (ROOT / "deploy" / "monitoring" / RULES_FILE).read_text(encoding="utf-8")
        )["groups"][0]["rules"]
    }

    def evaluated() -> dict[str, dict[str, Any]]:
        rules = {r["name"]: r for g in prometheus.api("rules")["groups"] for r in g["rules"]}
        return rules if all(r["health"] == "ok" for r in rules.values()) else {}

    rules = wait_for(evaluated, "every rule to be evaluated")
    assert set(rules) == expected
    states = {name: r["state"] for name, r in rules.items()}
    print("rules evaluated:", json.dumps(states))
    # pending is possible for drift: a 40-applicant window is noisy, and its `for` is an hour
    assert "firing" not in states.values(), "healthy traffic must not page anyone"


def test_a_killed_runner_fires_the_restart_alert(
    server: Server, prometheus: Prometheus, scraped: dict[int, int]
) -> None:
    """Last: SIGKILL the runner; BentoML starts a new one, its start time changes, and the
    alert fires in Prometheus with the runner's labels."""
    runner_key = ("credit_scorer", "1")
    before = _worker_values(server, "process_start_time_seconds")[runner_key]
    runner = harness.service_process(server.root, "credit_scorer")
    assert runner is not None
    runner.send_signal(signal.SIGKILL)

    def restarted() -> float:
        try:
            value = _worker_values(server, "process_start_time_seconds").get(runner_key, 0.0)
        except httpx.TransportError:
            return 0.0
        return value if value > before else 0.0

    after = wait_for(restarted, "a new runner to publish its start time", timeout=120)
    print(f"runner start time {before:.2f} -> {after:.2f}")

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "CreditRiskRunnerRestarted" and a["state"] == "firing"
        ]

    (alert,) = wait_for(firing, "CreditRiskRunnerRestarted to fire")
    print("alert:", json.dumps(alert["labels"]), alert["annotations"]["summary"])
    assert alert["labels"]["service_name"] == "credit_scorer"
    assert alert["labels"]["pod"] == POD
    assert alert["labels"]["namespace"] == NAMESPACE
