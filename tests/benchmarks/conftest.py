"""What the micro-benchmarks record beside their figures: no host name, no checkout path."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """The machine as its CPU, kernel and interpreter, not its host name."""
    machine_info.pop("node", None)


def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict[str, Any]) -> None:
    """The commit, not the name of the directory it was checked out in."""
    commit_info.pop("project", None)
