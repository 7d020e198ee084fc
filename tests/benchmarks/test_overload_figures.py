"""The overload run's accounting, on requests whose fate is known: no server, no load generator.

The short real run (test_overload.py) shows the accounting holds on a healthy service; these show
it notices when it does not: a decision missing from the log, one logged twice, a phase that
never recovers, a generator that fell behind its schedule.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

from load_tests import overload
from load_tests.overload import Phase, Shot

PHASES = [
    Phase("before", 4.0, 2.0, 0.0),
    Phase("flood", 8.0, 4.0, 2.0),
    Phase("after", 4.0, 2.0, 6.0),
]
"""8, 32 and 8 requests; the flood runs from 2 s to 6 s."""


def _shots(statuses: dict[str, list[int]], late_s: float = 0.0) -> list[Shot]:
    """Each phase's requests sent on schedule (`late_s` behind it), answered in 50 ms."""
    return [
        Shot(phase.name, phase.start + i / phase.rate + late_s, status, 0.05)
        for phase in PHASES
        for i, status in enumerate(statuses[phase.name])
    ]


def test_phases_offer_their_rate_in_whole_connections_per_period() -> None:
    assert [p.requests for p in PHASES] == [8, 32, 8]
    assert all(
        p.per_period == 1 and abs(p.rate / r - 1) <= 0.01
        for p, r in zip(PHASES, (4, 8, 4), strict=True)
    )
    flood = Phase("flood", 3_460.0, 30.0, 10.0)
    assert abs(flood.rate / 3_460.0 - 1) <= 0.01
    assert flood.per_period * 1000 / flood.period_ms == flood.rate
    assert flood.period_ms <= 10, "a timer, not a burst a second"


def test_h2load_opens_one_connection_per_request_on_a_timer() -> None:
    flood = Phase("flood", 3_460.0, 30.0, 10.0)
    argv = overload.h2load("http://127.0.0.1:1", overload.Path("b.json"), overload.Path("l"),
                           flood.requests, flood)  # fmt: skip
    given = dict(itertools.pairwise(argv))
    assert given["-c"] == given["-n"] == str(flood.requests)
    assert given["-r"] == str(flood.per_period)
    assert f"--rate-period={flood.period_ms}ms" in argv


def test_a_clean_log_has_one_record_per_answer() -> None:
    log = overload.decision_log_figures(Counter({f"id-{i}": 1 for i in range(36)}), 36, 0)
    assert log["one_record_per_200"]
    assert log["ids_logged_more_than_once"] == 0


def test_a_lost_and_a_doubled_decision_are_caught() -> None:
    logged = Counter({f"id-{i}": 1 for i in range(35)})
    assert not overload.decision_log_figures(logged, 36, 0)["one_record_per_200"]  # lost
    logged["id-0"] += 1
    doubled = overload.decision_log_figures(logged, 36, 0)
    assert doubled["ids_logged_more_than_once"] == 1
    assert not doubled["one_record_per_200"]


def test_records_of_requests_the_client_gave_up_on_are_allowed_up_to_their_number() -> None:
    logged = Counter({f"id-{i}": 1 for i in range(38)})
    assert overload.decision_log_figures(logged, 36, 2)["one_record_per_200"]
    assert not overload.decision_log_figures(logged, 36, 1)["one_record_per_200"]


def test_recovery_counts_from_the_end_of_the_flood() -> None:
    after = [503, 503, 503, 200, 200, 200, 200, 200]  # the refusals all in its first second
    shots = _shots({"before": [200] * 8, "flood": [503] * 32, "after": after})
    figures = overload.open_loop_figures(shots, PHASES)
    assert [p["requests"] for p in figures["phases"]] == [8, 32, 8]
    assert figures["phases"][1]["shed_share"] == 1.0
    assert figures["recovered_after_s"] == 1  # the first second after still had refusals
    never = _shots({"before": [200] * 8, "flood": [503] * 32, "after": [200] * 7 + [503]})
    assert overload.open_loop_figures(never, PHASES)["recovered_after_s"] is None


def test_requests_never_answered_count_as_client_failures_in_their_phase() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 31, "after": [200] * 8})
    shots.append(Shot("flood", 5.999, -1, math.inf))  # h2load counted it, never logged it
    figures = overload.open_loop_figures(shots, PHASES)
    assert figures["phases"][1]["requests"] == 32
    assert figures["client_failures"] == 1
    assert sum(s["offered"] for s in figures["per_second"]) == 48


def test_send_lag_shows_a_generator_behind_its_schedule() -> None:
    statuses = {"before": [200] * 8, "flood": [200] * 32, "after": [200] * 8}
    on_time = overload.open_loop_figures(_shots(statuses), PHASES)["phases"][0]["send_lag_ms"]
    late = overload.open_loop_figures(_shots(statuses, 0.3), PHASES)["phases"][0]["send_lag_ms"]
    assert on_time["max"] == 0.0
    assert late["p50"] == late["max"] == 300.0


def test_the_report_shows_every_phase_and_the_settled_flood() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 16 + [429] * 16, "after": [200] * 8})
    figures = overload.open_loop_figures(shots, PHASES)
    assert figures["flood_after_onset"]["phase"] == f"flood after its first {overload.ONSET_S:g} s"
    settled = [s for s in shots if s.phase == "flood" and s.sent >= 2.0 + overload.ONSET_S]
    assert figures["flood_after_onset"]["requests"] == len(settled) < 32
    assert figures["flood_after_onset"]["statuses"] == {"429": len(settled)}
