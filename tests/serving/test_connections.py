"""The per-process connection bound and its setting (the real limit, in a child process)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from credit_risk.serving.connections import RESERVED_DESCRIPTORS
from credit_risk.serving.settings import Settings
from credit_risk.serving.tuning import DEFAULT_MAX_CONNECTIONS


def _limit_after_bounding(max_connections: int) -> tuple[int, int, int]:
    """(returned, soft, hard) in a fresh interpreter, so this process keeps its own limit."""
    code = (
        "import resource; from credit_risk.serving.connections import bound_open_connections; "
        f"r = bound_open_connections({max_connections}); "
        "print(r, *resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    returned, soft, hard = (int(x) for x in out.stdout.split())
    return returned, soft, hard


def test_the_descriptor_limit_is_connections_plus_the_reserve() -> None:
    returned, soft, hard = _limit_after_bounding(100)
    assert returned == soft == 100 + RESERVED_DESCRIPTORS
    assert hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1], "the hard limit is untouched"


def test_the_limit_never_exceeds_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit to stay under")
    returned, soft, _ = _limit_after_bounding(hard * 2)
    assert returned == soft == hard


def test_max_connections_setting() -> None:
    assert Settings.from_env({}).max_connections == DEFAULT_MAX_CONNECTIONS
    assert Settings.from_env({"CREDIT_RISK_MAX_CONNECTIONS": "250"}).max_connections == 250
    for bad in ("0", "-5", "many"):
        with pytest.raises(ValueError, match="CREDIT_RISK_MAX_CONNECTIONS"):
            Settings.from_env({"CREDIT_RISK_MAX_CONNECTIONS": bad})
