"""A short overload run against the real server: load_tests/overload.py with bounded phases.

The full run (`make overload`, ~2 min) writes reports/overload.md; this one checks what must
hold whatever the machine's speed: every scheduled request is accounted for, nothing decided is
lost or logged twice, refusals are 429 or 503 and never another 5xx, no worker crashes. Latency
and throughput, the generator's included, are measured, not asserted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from load_tests import overload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("h2load") is None,
        reason="h2load not installed (apt-get install nghttp2-client; .ci/run does)",
    ),
]


def test_a_short_overload_loses_no_decision(model_tag: str, tmp_path: Path) -> None:
    args = overload.parse_args(
        [
            *("--model", model_tag, "--out", str(tmp_path), "--seconds", "3"),
            *("--before", "2", "--flood", "5", "--after", "3"),
        ]
    )
    result = overload.run(args)
    report = overload.render({**result, "command": "test"})
    # every request the open loop scheduled is accounted for once, whatever became of it
    scheduled = [p["requests"] for p in result["settings"]["phases"]]
    assert [p["requests"] for p in result["phases"]] == scheduled, report
    assert sum(s["offered"] for s in result["per_second"]) == sum(scheduled), report
    assert result["server_errors"] == 0, report
    statuses = {int(k) for r in result["phases"] for k in r["statuses"] if k != "-1"}
    assert statuses <= {200, 429, 503}, report
    log = result["decision_log"]
    assert log["answered_200"] > 0, report
    assert log["ids_logged_more_than_once"] == 0, report
    assert log["one_record_per_200"], report
    assert result["processes"]["unchanged"], report
