"""The overload run's accounting, on requests whose fate is known: no server, no load generator.

The short real run (test_overload.py) shows the accounting holds on a healthy service; these show
it notices when it does not: a decision missing from the log, one logged twice, a phase that
never recovers.
"""

from __future__ import annotations

from collections import Counter

from load_tests import overload
from load_tests.overload import Phase, Shot

PHASES = [Phase("before", 4.0, 2.0), Phase("flood", 8.0, 4.0), Phase("after", 4.0, 2.0)]
"""8, 32 and 8 requests; the flood runs from 2 s to 6 s."""


def _shots(statuses: dict[str, list[int | str]]) -> list[Shot]:
    """Each phase's requests on its schedule, answered 50 ms later with the given statuses."""
    shots, start = [], 0.0
    for phase in PHASES:
        for i, status in enumerate(statuses[phase.name]):
            due = start + i / phase.rate
            decision_id = f"{phase.name}-{i}" if status == 200 else None
            shots.append(Shot(phase.name, due, due + 0.05, status, decision_id))
        start += phase.seconds
    return shots


def _wrk_runs(ok: int) -> list[dict[str, int]]:
    return [{"ok": ok}, {"ok": 0}, {"ok": 0}]


def test_a_clean_run_accounts_for_every_decision() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 20 + [429] * 12, "after": [200] * 8})
    logged = Counter(s.decision_id for s in shots if s.decision_id is not None)
    logged.update({"from-wrk-1": 1, "from-wrk-2": 1})
    log = overload.decision_log_figures(shots, logged, _wrk_runs(ok=2))
    assert log["open_loop_200s"] == 36
    assert log["answered_ids_logged_exactly_once"]
    assert log["records_not_from_the_open_loop"] == 2
    assert log["other_records_accounted"]


def test_a_lost_and_a_doubled_decision_are_caught() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 32, "after": [200] * 8})
    logged = Counter(s.decision_id for s in shots if s.decision_id is not None)
    del logged["flood-3"]
    logged["after-0"] += 1
    log = overload.decision_log_figures(shots, logged, _wrk_runs(ok=0))
    assert not log["answered_ids_logged_exactly_once"]
    assert log["answered_ids_missing_from_log"] == 1
    assert log["ids_logged_more_than_once"] == 1


def test_records_beyond_wrk_and_the_requests_in_flight_are_not_accounted() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 32, "after": [200] * 8})
    logged = Counter(s.decision_id for s in shots if s.decision_id is not None)
    in_flight_at_most = 3 * overload.CAPACITY_CONNECTIONS
    logged.update({f"unknown-{i}": 1 for i in range(in_flight_at_most + 1)})
    log = overload.decision_log_figures(shots, logged, _wrk_runs(ok=0))
    assert log["in_flight_at_end_at_most"] == in_flight_at_most
    assert not log["other_records_accounted"]


def test_recovery_counts_from_the_end_of_the_flood() -> None:
    after = [503, 503, 503, 200, 200, 200, 200, 200]  # the refusals all in its first second
    shots = _shots({"before": [200] * 8, "flood": [503] * 32, "after": after})
    figures = overload.open_loop_figures(shots, PHASES, flood_start=2.0)
    assert [p["requests"] for p in figures["phases"]] == [8, 32, 8]
    assert figures["phases"][1]["shed_share"] == 1.0
    # the first second after the flood still had refusals, the next had none
    assert figures["recovered_after_s"] == 1
    never = overload.open_loop_figures(
        _shots({"before": [200] * 8, "flood": [503] * 32, "after": [200] * 7 + [503]}),
        PHASES,
        flood_start=2.0,
    )
    assert never["recovered_after_s"] is None


def test_the_report_shows_every_phase_and_the_settled_flood() -> None:
    shots = _shots({"before": [200] * 8, "flood": [200] * 16 + [429] * 16, "after": [200] * 8})
    result = {
        **overload.open_loop_figures(shots, PHASES, flood_start=2.0),
        "settings": {"normal_fraction": 0.5, "factor": 2.0},
    }
    rows = [line for line in overload.open_loop_table(result) if line.startswith("| ")][2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| before",
        "| flood",
        f"| flood after its first {overload.ONSET_S:g} s",
        "| after",
    ]
