"""Per-worker process metrics: the figures are the process's own (prometheus_client's collector
reads the same /proc), and in multiprocess mode each worker stays apart while a restarted
worker takes over its slot (newest start time, CPU time that never goes back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector

from credit_risk.serving.process_metrics import (
    CPU_SAMPLE,
    CPU_SECONDS,
    GAUGES,
    ProcessMetrics,
    start_process_metrics,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _own(worker: tuple[str, str]) -> dict[str, float]:
    """What the module-level metrics hold for `worker`, in this process."""
    labels = dict(zip(("service_name", "worker_index"), worker, strict=True))
    return {
        s.name: s.value
        for metric in (CPU_SECONDS, *GAUGES.values())
        for family in metric.collect()
        for s in family.samples
        if s.labels == labels and not s.name.endswith("_created")
    }


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_refresh_publishes_the_process_own_figures() -> None:
    worker = ("credit_scorer", "7")
    metrics = ProcessMetrics(*worker)
    metrics.refresh()
    collected = {
        s.name: s.value for f in ProcessCollector(registry=None).collect() for s in f.samples
    }
    published = _own(worker)
    assert set(published) == {CPU_SAMPLE, *GAUGES}
    assert published["process_start_time_seconds"] == collected["process_start_time_seconds"]
    assert published["process_max_fds"] == collected["process_max_fds"]
    assert published["process_open_fds"] > 0
    assert published["process_resident_memory_bytes"] > 10 * 2**20
    assert published[CPU_SAMPLE] == pytest.approx(collected[CPU_SAMPLE], abs=0.05)

    before = published[CPU_SAMPLE]
    _burn(0.3)
    metrics.refresh()
    assert _own(worker)[CPU_SAMPLE] - before == pytest.approx(0.3, abs=0.1)


def test_the_background_refresh_follows_the_process() -> None:
    worker, stop = start_process_metrics(interval_s=0.05)
    try:
        labels = ("unknown", "0")  # no BentoML server context in a test process
        before = _own(labels)[CPU_SAMPLE]
        _burn(0.2)
        deadline = time.monotonic() + 30
        while _own(labels)[CPU_SAMPLE] < before + 0.1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _own(labels)[CPU_SAMPLE] >= before + 0.1
    finally:
        stop.set()
    assert isinstance(worker, ProcessMetrics)


WORKER = """
import json, sys, time
from prometheus_client.process_collector import ProcessCollector
from credit_risk.serving.process_metrics import ProcessMetrics
end = time.process_time() + float(sys.argv[3])
while time.process_time() < end:
    pass
ProcessMetrics(sys.argv[1], sys.argv[2]).refresh()
print(json.dumps({s.name: s.value for f in ProcessCollector(registry=None).collect()
                  for s in f.samples}))
"""


def _run_worker(directory: Path, service: str, index: str, burn_s: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, service, index, str(burn_s)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_multiprocess_mode_keeps_workers_apart_and_a_restart_takes_its_slot(
    tmp_path: Path,
) -> None:
    api_1 = _run_worker(tmp_path, "credit_risk_service", "1", 0.0)
    api_2 = _run_worker(tmp_path, "credit_risk_service", "2", 0.0)
    runner = _run_worker(tmp_path, "credit_scorer", "1", 0.2)
    restarted = _run_worker(tmp_path, "credit_scorer", "1", 0.2)  # the same slot, later
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    merged: dict[tuple[str, str], dict[str, float]] = {}
    for family in registry.collect():
        for s in family.samples:
            worker = (s.labels["service_name"], s.labels["worker_index"])
            assert set(s.labels) == {"service_name", "worker_index"}, s.labels  # no pid
            merged.setdefault(worker, {})[s.name] = s.value

    assert set(merged) == {
        ("credit_risk_service", "1"),
        ("credit_risk_service", "2"),
        ("credit_scorer", "1"),
    }
    start = "process_start_time_seconds"
    assert merged[("credit_risk_service", "1")][start] == api_1[start]
    assert merged[("credit_risk_service", "2")][start] == api_2[start]
    assert restarted[start] > runner[start]
    assert merged[("credit_scorer", "1")][start] == restarted[start]  # the newest process
    # CPU time adds up every process that held the slot, so a restart never lowers it
    assert merged[("credit_scorer", "1")][CPU_SAMPLE] == pytest.approx(
        runner[CPU_SAMPLE] + restarted[CPU_SAMPLE], abs=0.05
    )
