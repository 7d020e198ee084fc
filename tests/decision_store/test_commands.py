"""`credit-risk decisions ...` and `credit-risk outcomes load` on both backends: one line and
exit 2 for bad input, exit 1 from verify for a tampered store, complete output files only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from credit_risk.cli import main
from credit_risk.decision_store import DecisionRecord, DecisionStore, open_store
from credit_risk.decision_store.chain import ChainWriter, verify
from credit_risk.decision_store.records import COLUMNS
from credit_risk.schema import example_applicant
from credit_risk.serving.notice import render_notice
from tests.decision_store.records_for_tests import decided_record, make_records


def cli(store_url: str, *args: str) -> Result:
    """Run a subcommand against the store at `store_url`."""
    command, rest = args[0], list(args[1:])
    group = ["decisions", "outcomes", "backtest"]
    prefix = [command] if command in group else ["decisions", command]
    if command in group:
        prefix, rest = [command, rest[0]], rest[1:]
    return CliRunner().invoke(main, [*prefix, *rest, "--store", store_url])


@pytest.fixture
def stored(store: DecisionStore) -> list[DecisionRecord]:
    writer = ChainWriter(store, "api:test")
    old = writer.append(make_records(2, "loan-1", datetime(2024, 1, 10, tzinfo=UTC)))
    new = writer.append(
        make_records(3, "loan-2", datetime(2026, 6, 1, tzinfo=UTC), officer_id="officer.k")
    )
    return old + new


def test_show_one_decision_and_every_decision_for_a_reference(
    store: DecisionStore, stored: list[DecisionRecord]
) -> None:
    one = cli(store.url, "show", stored[0].decision_id)
    assert one.exit_code == 0, one.output
    assert json.loads(one.output)["inputs"] == example_applicant()
    many = cli(store.url, "show", "--application-id", "loan-2")
    assert [d["decision_id"] for d in json.loads(many.output)["decisions"]] == [
        r.decision_id for r in stored[2:]
    ]
    assert {d["officer_id"] for d in json.loads(many.output)["decisions"]} == {"officer.k"}
    assert json.loads(one.output)["officer_id"] is None
    missing = cli(store.url, "show", "f" * 32)
    assert (missing.exit_code, missing.output.strip()) == (
        1,
        f"Error: no decision {'f' * 32} in the decision store",
    )
    neither = cli(store.url, "show")
    assert neither.exit_code == 2
    assert len(neither.output.strip().splitlines()) == 1


def test_verify_passes_then_names_an_edited_record(
    store: DecisionStore, stored: list[DecisionRecord]
) -> None:
    ok = cli(store.url, "verify")
    assert (ok.exit_code, ok.output) == (0, "verify: 5 records in 1 chains: OK\n")
    with store.transaction() as cur:
        cur.execute(
            store._sql("UPDATE decisions SET score = score + 40 WHERE decision_id = ?"),
            (stored[3].decision_id,),
        )
    tampered = cli(store.url, "verify")
    assert tampered.exit_code == 1
    assert tampered.output.splitlines() == [
        f"EDITED: record {stored[3].decision_id} (writer api:test, #4): "
        "its content no longer matches its hash",
        "verify: 5 records in 1 chains: FAILED, 1 problem(s)",
    ]


def test_purge_keeps_what_remains_verifiable(
    store: DecisionStore, stored: list[DecisionRecord]
) -> None:
    r = cli(store.url, "purge", "--before", "2025-01-01")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(
        "purged 2 decisions made before 2025-01-01T00:00:00.000000Z; 3 remain"
    )
    assert "the store verifies" in r.output
    assert cli(store.url, "verify").exit_code == 0
    bad = cli(store.url, "purge", "--before", "last year")
    assert bad.exit_code == 2
    assert "not an ISO date" in bad.output


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_writes_every_column_of_the_chosen_window(
    store: DecisionStore, stored: list[DecisionRecord], tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out" / f"decisions.{fmt}"
    out.parent.mkdir()
    r = cli(store.url, "export", str(out), "--since", "2025-01-01")
    assert (r.exit_code, r.output) == (0, f"{out}: 3 decisions ({fmt})\n")
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq  # noqa: PLC0415 (the portfolio extra)

        rows = pq.read_table(out).to_pylist()
    assert [tuple(row[c] for c in COLUMNS) for row in rows] == [r.as_row() for r in stored[2:]]
    assert {row["officer_id"] for row in rows} == {"officer.k"}
    assert [p.name for p in out.parent.iterdir()] == [out.name], "no temporary file left"


def test_export_into_a_missing_directory_is_refused_and_leaves_nothing(
    store: DecisionStore, stored: list[DecisionRecord], tmp_path: Path
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    r = cli(store.url, "export", str(target / "nowhere" / "x.jsonl"))
    assert r.exit_code == 2
    assert len(r.output.strip().splitlines()) == 1
    assert list(target.iterdir()) == []


def test_import_of_a_json_lines_decision_log(store: DecisionStore, tmp_path: Path) -> None:
    pods = tmp_path / "shared"
    line = example_applicant() | {
        "decision_id": "ab" * 16,
        "model_version": "credit_risk:old",
        "probability_of_default": 0.4,
        "score": 490,
        "risk_band": "E",
        "decision": "decline",
        "threshold": 0.17,
        "reason_codes": "RC02,RC01",
        "challenger": None,
        "timestamp": "2025-03-01T10:00:00.123456",
        "request_id": "1",
        "trace_id": "2",
    }
    second = line | {"decision_id": "cd" * 16, "timestamp": "2025-03-02T10:00:00"}
    second.pop("challenger")
    for pod, record in (("pod-a", line), ("pod-b", second)):
        log = pods / pod / "credit_risk_decisions" / "data" / "data.1.log"
        log.parent.mkdir(parents=True)
        log.write_text(json.dumps(record) + "\n")
    r = cli(store.url, "import", str(pods))
    assert r.output == f"{pods}: 2 records in 2 file(s): 2 imported, 0 already stored\n"
    again = cli(store.url, "import", str(pods))
    assert again.output == f"{pods}: 2 records in 2 file(s): 0 imported, 2 already stored\n"
    view = store.get("ab" * 16).view()  # type: ignore[union-attr]
    assert view["decided_at"] == "2025-03-01T10:00:00.123456Z"
    assert [x["description"] for x in view["reasons"]] == [
        "Length of the loan term",
        "Current-account balance, or no current account",
    ]
    assert view["challenger"] is None
    assert view["policy_version"] == "unrecorded"
    assert store.get("cd" * 16).challenger is None  # type: ignore[union-attr]
    assert verify(store).problems == []


def test_import_refuses_a_bad_line_naming_it_and_imports_nothing(
    store: DecisionStore, tmp_path: Path
) -> None:
    log = tmp_path / "data.1.log"
    good = example_applicant() | {"decision_id": "ab" * 16, "timestamp": "2025-01-01T00:00:00"}
    log.write_text(json.dumps(good) + "\n" + "{not json\n")
    r = cli(store.url, "import", str(log))
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: {log} line 1: not a decision record (no 'model_version')"
    assert store.count() == 0


def test_outcomes_load_refuses_unknown_decisions_and_outcomes_before_their_decision(
    store: DecisionStore, stored: list[DecisionRecord], tmp_path: Path
) -> None:
    path = tmp_path / "outcomes.csv"
    header = "decision_id,outcome,observed_at\n"
    path.write_text(header + f"{stored[2].decision_id},good,1999-01-01\n")
    early = cli(store.url, "outcomes", "load", str(path))
    assert early.exit_code == 2
    assert early.output.strip() == (
        f"Error: {path} line 2: outcome observed at 1999-01-01, before its decision "
        f"{stored[2].decision_id} was made ({stored[2].decided_at})"
    )
    path.write_text(
        header + f"{stored[2].decision_id},bad,2027-01-01\n{'9' * 32},good,2027-01-01\n"
    )
    unknown = cli(store.url, "outcomes", "load", str(path))
    assert unknown.exit_code == 2
    assert f"line 3: decision_id {'9' * 32} is in no stored decision" in unknown.output
    assert store.outcomes() == {}
    path.write_text(header + f"{stored[2].decision_id},bad,2026-06-01\n")
    ok = cli(store.url, "outcomes", "load", str(path))
    assert (ok.exit_code, ok.output) == (0, f"{path}: 1 outcomes loaded\n")
    assert store.outcomes()[stored[2].decision_id].outcome == "bad"


def test_a_store_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'd.sqlite'}"
    r = cli(url, "verify")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"Error: decision store unavailable (cannot_open): {tmp_path / 'missing-dir'} "
        "does not exist"
    ]
    assert open_store(url).path.parent.exists() is False  # type: ignore[attr-defined]


def test_notice_writes_a_declined_decisions_notice_whole(
    store: DecisionStore, tmp_path: Path
) -> None:
    [declined] = ChainWriter(store, "api:test").append(
        [decided_record(0.4, {"credit_history": 0.9, "savings": 0.3}, recourse=(3200.0, 24))]
    )
    out = tmp_path / "notices" / "notice.html"
    out.parent.mkdir()
    result = cli(store.url, "notice", declined.decision_id, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_notice(declined)
    assert [p.name for p in out.parent.iterdir()] == ["notice.html"], "no temporary file left"


@pytest.mark.parametrize("case", ["unknown", "approved", "malformed"])
def test_notice_refuses_an_unknown_approved_or_malformed_id_in_one_line(
    store: DecisionStore, tmp_path: Path, case: str
) -> None:
    [approved] = ChainWriter(store, "api:test").append([decided_record(0.05, {})])
    decision_id = {"unknown": "e" * 32, "approved": approved.decision_id, "malformed": "E" * 32}
    expected = {
        "unknown": "no decision",
        "approved": "not a decline",
        "malformed": "32 lowercase hexadecimal",
    }
    out = tmp_path / "notices" / "notice.html"
    out.parent.mkdir()
    out.write_text("an earlier notice")
    result = cli(store.url, "notice", decision_id[case], "--out", str(out))
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert expected[case] in line
    assert out.read_text() == "an earlier notice", "left as it was"
    assert [p.name for p in out.parent.iterdir()] == ["notice.html"]


def test_notice_into_a_missing_directory_is_one_line(store: DecisionStore, tmp_path: Path) -> None:
    [declined] = ChainWriter(store, "api:test").append([decided_record(0.4, {"savings": 0.3})])
    out = tmp_path / "nowhere" / "notice.html"
    result = cli(store.url, "notice", declined.decision_id, "--out", str(out))
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "nowhere" in result.output
