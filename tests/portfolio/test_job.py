"""`credit-risk score` end to end: outputs, quarantine, exit codes, audit log, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from credit_risk.cli import main
from credit_risk.portfolio.audit import read_runs
from credit_risk.portfolio.job import Job, run
from credit_risk.portfolio.scoring import DECISION_FIELDS
from tests.portfolio.conftest import book, write


def score(tmp_path: Path, model_tag: str, *args: str) -> Result:
    audit = tmp_path / "runs.jsonl"
    argv = ["score", *args, "--model", model_tag, "--audit-log", str(audit)]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def read(path: Path) -> pa.Table:
    """An output as written (empty CSV fields are nulls)."""
    if path.suffix == ".csv":
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return pq.read_table(path)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "partial" in p.name)


def test_every_row_scored_exit_0_with_ids_and_audit(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    table = book(applicants[:300]).append_column("branch", pa.array(["x"] * 300))
    src = write(table, tmp_path / "book.parquet")
    result = score(
        tmp_path, model_tag, str(src), str(tmp_path / "out.parquet"), "--id-column", "account_id"
    )
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()  # no progress bar off a terminal: one line
    assert line.startswith("run ")
    assert "300 scored, 0 quarantined of 300 rows" in line
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["row", "account_id", *(f.name for f in DECISION_FIELDS)]
    assert out.column("account_id").to_pylist() == table.column("account_id").to_pylist()
    assert out.column("row").to_pylist() == list(range(1, 301))
    assert set(out.column("model_version").to_pylist()) == {model_tag}
    assert pq.read_table(tmp_path / "out.quarantine.parquet").num_rows == 0
    (record,) = read_runs(tmp_path / "runs.jsonl")
    assert record["status"] == "scored"
    assert (record["rows_read"], record["rows_scored"], record["rows_quarantined"]) == (300, 300, 0)
    assert record["run_id"] == out.column("run_id")[0].as_py()
    assert len(record["input_sha256"]) == 64
    assert {"read", "validate", "encode", "score", "recourse", "decide", "write"} <= set(
        record["stage_seconds"]
    )


def test_reasons_only_for_declines_in_order(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants), tmp_path / "book.parquet")
    assert score(tmp_path, model_tag, str(src), str(tmp_path / "out.parquet")).exit_code == 0
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert {r["decision"] for r in rows} == {"approve", "decline"}
    for r in rows:
        points = [r[f"reason_{k}_points"] for k in range(1, 5)]
        codes = [r[f"reason_{k}"] for k in range(1, 5)]
        assert [p is None for p in points] == [c is None for c in codes]
        if r["decision"] == "approve":
            assert codes == [None] * 4
        present = [p for p in points if p is not None]
        assert present == sorted(present)
        assert all(p < 0 for p in present)


def test_recourse_only_for_declines_and_applying_it_is_approved(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants), tmp_path / "book.parquet")
    assert score(tmp_path, model_tag, str(src), str(tmp_path / "out.parquet")).exit_code == 0
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    found = [r for r in rows if r["recourse_credit_amount"] is not None]
    assert found, "some declines have a recourse"
    for r in rows:
        amount, term = r["recourse_credit_amount"], r["recourse_duration_months"]
        assert (amount is None) == (term is None)
        assert (r["recourse_method"] is None) == (r["decision"] == "approve")
    assert {r["recourse_method"] for r in rows} - {None} <= {"exact", "search"}
    # the same applicants asking for what the recourse says: every one approved
    changed = [
        {
            **applicants[r["row"] - 1],
            "credit_amount": r["recourse_credit_amount"],
            "duration_months": r["recourse_duration_months"],
        }
        for r in found
    ]
    again = write(book(changed), tmp_path / "changed.parquet")
    assert score(tmp_path, model_tag, str(again), str(tmp_path / "again.parquet")).exit_code == 0
    decisions = pq.read_table(tmp_path / "again.parquet").column("decision").to_pylist()
    assert decisions == ["approve"] * len(found)


def test_csv_and_parquet_give_the_same_decisions(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    table = book(applicants[:200])
    for ext in ("parquet", "csv"):
        src = write(table, tmp_path / f"book.{ext}")
        assert score(tmp_path, model_tag, str(src), str(tmp_path / f"out.{ext}")).exit_code == 0
    a, b = read(tmp_path / "out.parquet"), read(tmp_path / "out.csv")
    keep = [
        "row",
        "probability_of_default",
        "score",
        "risk_band",
        "decision",
        "reason_1",
        "reason_4_points",
        "recourse_credit_amount",
        "recourse_duration_months",
        "recourse_method",
    ]
    assert a.select(keep).to_pylist() == b.select(keep).to_pylist()


def test_bad_rows_are_quarantined_with_row_field_reason_exit_3(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    records = [dict(r) for r in applicants[:50]]
    records[3]["purpose"] = "holiday"  # unknown category
    records[7]["credit_amount"] = -100.0  # negative amount
    records[9]["age_years"] = None  # null in a required field
    src = write(book(records), tmp_path / "book.parquet")
    q = tmp_path / "bad.csv"
    result = score(
        tmp_path,
        model_tag,
        str(src),
        str(tmp_path / "out.parquet"),
        "--id-column",
        "account_id",
        "--quarantine",
        str(q),
    )
    assert result.exit_code == 3, result.output
    assert "47 scored, 3 quarantined" in result.output
    bad = pacsv.read_csv(q).to_pylist()
    assert [(r["row"], r["account_id"], r["field"]) for r in bad] == [
        (4, 1003, "purpose"),
        (8, 1007, "credit_amount"),
        (10, 1009, "age_years"),
    ]
    assert bad[0]["reason"].startswith("unknown category")
    assert bad[0]["value"] == "holiday"
    assert bad[1]["reason"] == "must be > 0"
    assert bad[2]["reason"] == "missing value"
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 47


def test_csv_with_a_bad_row_in_the_middle(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants[:20]), tmp_path / "book.csv")
    lines = src.read_text().splitlines()
    lines[6] = lines[6].rsplit(",", 3)[0]  # data row 6 loses its last three fields
    lines[12] = lines[12].replace('"', "").replace(",", ";", 4)  # data row 12 garbled
    src.write_text("\n".join(lines) + "\n")
    result = score(
        tmp_path, model_tag, str(src), str(tmp_path / "out.csv"), "--id-column", "account_id"
    )
    assert result.exit_code == 3, result.output
    out = pacsv.read_csv(tmp_path / "out.csv")
    assert out.column("row").to_pylist() == [r for r in range(1, 21) if r not in (6, 12)]
    bad = pacsv.read_csv(tmp_path / "out.quarantine.csv").to_pylist()
    assert [r["row"] for r in bad] == [6, 12]
    assert all(r["reason"].startswith("malformed CSV row") for r in bad)


def test_duplicated_ids_are_scored_and_reported(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    table = book(applicants[:10])
    ids = table.column("account_id").to_pylist()
    ids[5] = ids[2]
    table = table.set_column(0, "account_id", pa.array(ids))
    src = write(table, tmp_path / "book.parquet")
    result = score(
        tmp_path, model_tag, str(src), str(tmp_path / "out.parquet"), "--id-column", "account_id"
    )
    assert result.exit_code == 0, result.output
    assert "1 rows repeat an earlier id (scored)" in result.output
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 10
    assert read_runs(tmp_path / "runs.jsonl")[0]["duplicate_id_rows"] == 1


def test_empty_ids_are_named_as_empty_not_as_repeats(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    """Three rows without an id (empty, quoted empty, blanks) are not "2 rows repeat an earlier
    id": they are counted as empty, and only a real repeat as a repeat."""
    src = write(book(applicants[:8]), tmp_path / "book.csv")
    lines = src.read_text().splitlines()
    lines[2] = "," + lines[2].split(",", 1)[1]
    lines[4] = '""' + "," + lines[4].split(",", 1)[1]
    lines[6] = "  ," + lines[6].split(",", 1)[1]
    lines[8] = lines[1].split(",", 1)[0] + "," + lines[8].split(",", 1)[1]
    src.write_text("\n".join(lines) + "\n")
    result = score(
        tmp_path, model_tag, str(src), str(tmp_path / "out.parquet"), "--id-column", "account_id"
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(
        "; 1 rows repeat an earlier id (scored); 3 rows have an empty id (scored)"
    )
    (record,) = read_runs(tmp_path / "runs.jsonl")
    assert (record["duplicate_id_rows"], record["empty_id_rows"]) == (1, 3)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 8


def refused(tmp_path: Path, model_tag: str, src: Path, *extra: str) -> str:
    out = tmp_path / "out.parquet"
    result = score(tmp_path, model_tag, str(src), str(out), *extra)
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert not (tmp_path / "out.quarantine.parquet").exists()
    assert leftovers(tmp_path) == []
    message = result.output.strip()
    assert "\n" not in message
    assert message.startswith("Error: ")
    assert "Traceback" not in message
    return message


def test_truncated_parquet_is_refused(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants), tmp_path / "book.parquet")
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert "not a readable Parquet file" in refused(tmp_path, model_tag, src)


def test_parquet_corrupt_mid_file_is_refused_and_nothing_is_left(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = tmp_path / "book.parquet"
    pq.write_table(book(applicants * 20), src, row_group_size=2000)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = b"\xff" * 4000
    src.write_bytes(bytes(data))
    message = refused(tmp_path, model_tag, src)
    assert "unreadable after row" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "the file is empty"), (b"account_id,purpose\n", "missing column")],
)
def test_empty_or_headless_csv_is_refused(
    tmp_path: Path, model_tag: str, content: bytes, expected: str
) -> None:
    src = tmp_path / "book.csv"
    src.write_bytes(content)
    assert expected in refused(tmp_path, model_tag, src)


def test_header_only_csv_is_refused(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants[:1]), tmp_path / "book.csv")
    src.write_text(src.read_text().splitlines()[0] + "\n")
    assert "no data rows" in refused(tmp_path, model_tag, src)


def test_wrong_type_missing_column_unknown_id_and_bad_arguments_are_refused(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    table = book(applicants[:5])
    wrong = table.set_column(
        table.schema.get_field_index("age_years"), "age_years", pa.array(["35"] * 5)
    ).set_column(table.schema.get_field_index("purpose"), "purpose", pa.array([1] * 5))
    assert "'purpose' has type int64" in refused(
        tmp_path, model_tag, write(wrong, tmp_path / "w.parquet")
    )
    missing = write(table.drop_columns(["savings"]), tmp_path / "m.parquet")
    assert "missing column(s) 'savings'" in refused(tmp_path, model_tag, missing)
    ok = write(table, tmp_path / "ok.parquet")
    assert "'branch' not in the input" in refused(tmp_path, model_tag, ok, "--id-column", "branch")
    assert "unknown file type '.json'" in refused(tmp_path, model_tag, tmp_path / "x.json")
    assert "no such file" in refused(tmp_path, model_tag, tmp_path / "absent.parquet")
    result = score(tmp_path, "credit_risk:nope", str(ok), str(tmp_path / "out.parquet"))
    assert result.exit_code == 2
    assert "not found" in result.output
    runs = read_runs(tmp_path / "runs.jsonl")
    assert {r["status"] for r in runs} == {"refused"}


def test_audit_log_defaults_to_the_bentoml_home(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]], own_store: Path
) -> None:
    src = write(book(applicants[:5]), tmp_path / "book.parquet")
    argv = ["score", str(src), str(tmp_path / "o.parquet"), "--model", model_tag]
    assert CliRunner().invoke(main, argv).exit_code == 0
    lines = (own_store / "portfolio" / "runs.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["output"] == str(tmp_path / "o.parquet")


def test_progress_bar_runs_through_a_whole_job(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]]
) -> None:
    src = write(book(applicants), tmp_path / "book.parquet")
    job = Job(
        src, tmp_path / "out.parquet", model_tag, audit_log=tmp_path / "a.jsonl", batch_rows=100
    )
    summary = run(job, progress=True)
    assert (summary.exit_code, summary.rows_scored) == (0, 1000)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_application_reference_column_is_carried_and_checked(
    tmp_path: Path, model_tag: str, applicants: list[dict[str, Any]], suffix: str
) -> None:
    refs = ["loan-1", None, "has space", "loan-1", "x" * 65, "A.b_c:d-9"]
    table = book(applicants[: len(refs)]).append_column("application_id", pa.array(refs))
    src = write(table, tmp_path / f"book{suffix}")
    out, q = tmp_path / f"out{suffix}", tmp_path / f"bad{suffix}"
    result = score(tmp_path, model_tag, str(src), str(out), "--quarantine", str(q))
    assert result.exit_code == 3, result.output
    scored = read(out)
    assert scored.column_names[:2] == ["row", "application_id"]
    assert scored.column("application_id").to_pylist() == ["loan-1", None, "loan-1", "A.b_c:d-9"]
    bad = read(q).to_pylist()
    assert [(r["row"], r["field"]) for r in bad] == [(3, "application_id"), (5, "application_id")]
    assert bad[0]["value"] == "has space"
