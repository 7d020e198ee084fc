"""The shutdown order, and the canaries for why: BentoML deletes the runner's socket before it
stops the workers, and circus stops every worker at once. The drain itself is proven on a real
server: tests/service/test_shutdown.py."""

from __future__ import annotations

import inspect

import bentoml._internal.utils.circus as bentoml_circus
import circus.arbiter

from credit_risk.serving.workarounds.shutdown_order import service_name


def test_bentoml_still_closes_its_exit_stack_before_stopping_the_workers() -> None:
    source = inspect.getsource(bentoml_circus)
    assert "self.exit_stack.__exit__(None, None, None)\n        return super().stop()" in source, (
        "BentoML's arbiter no longer closes its exit stack (the runner's socket directory) "
        "before stopping the workers: delete keep_runner_socket_until_workers_stop "
        "(credit_risk/serving/workarounds/shutdown_order.py)"
    )


def test_circus_still_stops_every_watcher_at_once() -> None:
    source = inspect.getsource(circus.arbiter.Arbiter._stop_watchers)
    assert "gen.multi(futures)" in source, (
        "circus no longer stops all watchers together: if it stops them by priority, give "
        "the runner the later stop and delete outlive_dependants"
    )


def test_a_workers_service_is_read_from_its_command_line() -> None:
    worker = ["python", "-m", "_bentoml_impl.worker.service", "service:X", "--service-name", "a"]
    assert service_name(worker) == "a"
    assert service_name(["bentoml", "serve", "service:X"]) is None
    assert service_name(["python", "--service-name"]) is None
