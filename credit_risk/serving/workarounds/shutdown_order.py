"""At shutdown the model runner outlives the API workers, so requests in flight finish.

Upstream (BentoML 1.4.40 with circus 0.19, checked): on SIGTERM `bentoml serve` (1) first
closes its arbiter's exit stack, which deletes the directory of the runner's Unix socket
(`bentoml._internal.utils.circus.Arbiter.stop`), and (2) then stops every worker at once, the
runner with the API workers (`circus.arbiter.Arbiter._stop_watchers`). Each API worker's
uvicorn waits for its requests in flight, but those need the runner: a new connection to it
found no socket file (FileNotFoundError), and a runner told to stop accepts nothing more.
Measured with tests/service/test_shutdown.py: 21 to 25 of 32 in-flight batch requests got 503
"runner unavailable" (the issue measured 22 and 9).

Two changes, one per cause. `keep_runner_socket_until_workers_stop` (run in the supervisor,
from the service's deployment hook) closes the exit stack once the workers have stopped, not
before. `outlive_dependants` (run in the runner, from its start-up hook) keeps the runner
serving after its SIGTERM until every API worker beside it (the supervisor's other children, of
another service) has exited, at most `deadline_s`, and only then lets uvicorn shut it down.
The canaries in tests/serving/workarounds/test_shutdown_order.py fail once BentoML closes its
exit stack after the watchers, or circus stops watchers in order; then delete the part that
became unnecessary.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import psutil
from bentoml._internal.utils.circus import Arbiter
from circus.arbiter import Arbiter as CircusArbiter

logger = logging.getLogger(__name__)


def service_name(cmdline: list[str]) -> str | None:
    """The `--service-name` a BentoML worker was started with (None for any other process)."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "--service-name":
            return cmdline[i + 1]
    return None


def dependants(me: psutil.Process) -> list[psutil.Process]:
    """The workers of the other services of this server: `me`'s siblings under the supervisor."""
    parent = me.parent()
    if parent is None:
        return []
    mine = service_name(me.cmdline())
    others = []
    for sibling in parent.children():
        try:
            if sibling.pid != me.pid and service_name(sibling.cmdline()) not in (None, mine):
                others.append(sibling)
        except psutil.Error:
            continue
    return others


def outlive_dependants(deadline_s: float) -> None:
    """On SIGTERM, wait (in a thread) for the other services' workers to exit, at most
    `deadline_s`, then hand the signal to the handler in place now (uvicorn's shutdown)."""
    previous = signal.getsignal(signal.SIGTERM)
    me = psutil.Process()

    def stop_later(signum: int, frame: FrameType | None) -> None:
        def wait_then_stop() -> None:
            started = time.monotonic()
            waiting = dependants(me)
            _, alive = psutil.wait_procs(waiting, timeout=deadline_s)
            logger.info(
                "shutdown: %d of %d API workers exited after %.1f s; stopping the runner",
                len(waiting) - len(alive),
                len(waiting),
                time.monotonic() - started,
            )
            _deliver(previous, signum, frame)

        threading.Thread(target=wait_then_stop, name="outlive-dependants", daemon=True).start()

    signal.signal(signal.SIGTERM, stop_later)


def keep_runner_socket_until_workers_stop() -> None:
    """In the supervisor: close BentoML's arbiter exit stack (which deletes the runner's socket
    directory) once the arbiter has stopped its workers, instead of before."""
    if getattr(Arbiter, "_credit_risk_stop_order", False):
        return
    bentoml_start = Arbiter.start

    def stop(self: Any) -> Any:
        return CircusArbiter.stop(self)  # the workers first; the exit stack when start() ends

    def start(self: Any, cb: Any = None) -> None:
        try:
            bentoml_start(self, cb)
        finally:
            self.exit_stack.close()

    Arbiter.stop = stop  # type: ignore[method-assign]
    Arbiter.start = start  # type: ignore[method-assign]
    Arbiter._credit_risk_stop_order = True


def _deliver(handler: Any, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
