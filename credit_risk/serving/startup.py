"""What a server worker does once, when it starts: process-wide settings and the start-up log.

Run from the services' start-up hooks (`@bentoml.on_startup`), never at import: importing
`service` (to build a bento, in a test, in the supervisor) changes nothing in the process.
"""

from __future__ import annotations

import gc
import logging

from credit_risk.promotion import ServedTags
from credit_risk.serving.connections import bound_open_connections
from credit_risk.serving.process_metrics import start_process_metrics
from credit_risk.serving.settings import Settings
from credit_risk.serving.tuning import RUNNER_SHUTDOWN_WAIT_S
from credit_risk.serving.workarounds.shutdown_order import (
    keep_runner_socket_until_workers_stop,
    outlive_dependants,
)
from credit_risk.serving.workarounds.validation_errors import install_client_error_log_filter

logger = logging.getLogger(__name__)


def prepare_worker(settings: Settings) -> None:
    """Bound this worker's open connections, keep client errors out of the error log, and
    publish this worker's process_* series (serving/process_metrics.py)."""
    install_client_error_log_filter()
    bound_open_connections(settings.max_connections)
    start_process_metrics()


def prepare_supervisor() -> None:
    """In `bentoml serve` itself, before any worker starts: stop the workers before removing
    the runner's socket at shutdown."""
    keep_runner_socket_until_workers_stop()


def prepare_runner() -> None:
    """Keep the runner serving after SIGTERM until the API workers have finished."""
    outlive_dependants(RUNNER_SHUTDOWN_WAIT_S)


def freeze_startup_garbage() -> None:
    """Move everything allocated at start-up (modules, model, tables) out of the cyclic GC's
    generations: it lives as long as the process, and the collector's pauses get shorter."""
    gc.collect()
    gc.freeze()


def announce_models(served: ServedTags, champion: str, challenger: str | None) -> None:
    """Log which model versions were resolved, where each choice came from, and what the
    promotion state had to say (a pin over it, or damage a pin bypassed)."""
    logger.setLevel(logging.INFO)  # BentoML's root logger lets warnings only through
    for note in served.notes:
        logger.warning("%s", note)
    logger.info(
        "champion %s (%s, resolved from %s); challenger %s (%s)",
        champion,
        served.champion_source,
        served.champion,
        challenger,
        served.challenger_source,
    )
