"""The Spark twin in local mode: the single-process job's rows, quarantine, counts, audit record
and exit code, on Parquet and on a CSV with every kind of malformed row."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from credit_risk.cli import main
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio import spark as portfolio_spark
from credit_risk.portfolio.audit import read_runs
from credit_risk.portfolio.job import Job, run
from tests.conftest import ROOT
from tests.portfolio.conftest import MALFORMED_KINDS, book, malformed_csv, write

pytest.importorskip("pyspark", reason="the `spark` dependency group is not installed")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java 17: `make java` installs Debian's JRE", allow_module_level=True)


@pytest.fixture
def spark_session(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    if "SPARK_LOCAL_DIRS" not in os.environ:  # Spark's scratch space in the test's own tmp
        monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path_factory.mktemp("spark-local")))
    spark, startup = portfolio_spark.session("local[2]")
    print(f"\nSpark session started in {startup:.1f} s")
    yield spark
    spark.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_spark_output_equals_the_cli_row_for_row(
    spark_session: Any, model_tag: str, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    records = [dict(r) for r in applicants]
    records[10]["purpose"] = "holiday"
    records[500]["credit_amount"] = -1.0
    src = write(book(records), tmp_path / "book.parquet")
    local = run(
        Job(
            src,
            tmp_path / "cli.parquet",
            model_tag,
            ("account_id",),
            audit_log=tmp_path / "a.jsonl",
        )
    )
    assert local.exit_code == 3
    args = portfolio_spark.parse_args(
        [str(src), str(tmp_path / "spark_out"), "--id-column", "account_id", "--model", model_tag]
        + ["--audit-log", str(tmp_path / "spark.jsonl")]
    )
    start = time.perf_counter()
    summary = portfolio_spark.run(args, spark_session)
    print(f"Spark scored {len(records)} rows in {time.perf_counter() - start:.1f} s")
    assert (summary.exit_code, summary.rows_read, summary.rows_scored) == (3, 1000, 998)
    ignore = ["run_id"]
    cli = pq.read_table(tmp_path / "cli.parquet").drop_columns(ignore).to_pylist()
    spark_rows = (
        pq.read_table(tmp_path / "spark_out").sort_by("row").drop_columns(ignore).to_pylist()
    )
    assert spark_rows == cli
    cli_q = pq.read_table(tmp_path / "cli.quarantine.parquet").to_pylist()
    spark_q = pq.read_table(tmp_path / "spark_out.quarantine").sort_by("row").to_pylist()
    assert spark_q == cli_q
    assert [r["row"] for r in cli_q] == [11, 501]


@pytest.mark.slow
@pytest.mark.integration
def test_spark_submit_style_run_with_a_model_archive(
    model_tag: str, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    """`python -m` with an exported archive: executors import it into a store of their own."""
    archive = tmp_path / "model.bentomodel"
    subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "export", model_tag, str(archive)],
        check=True,
        capture_output=True,
    )
    src = write(book(applicants[:100]), tmp_path / "book.csv")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "credit_risk.portfolio.spark",
            str(src),
            str(tmp_path / "out"),
            "--id-column",
            "account_id",
            "--model-archive",
            str(archive),
            "--master",
            "local[2]",
            "--audit-log",
            str(tmp_path / "runs.jsonl"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = read_runs(tmp_path / "runs.jsonl")
    assert (record["engine"], record["status"], record["rows_scored"]) == ("spark", "scored", 100)
    print(done.stderr.strip().splitlines()[-1])
    out = pq.read_table(tmp_path / "out")
    assert out.num_rows == 100
    assert set(out.column("model_version").to_pylist()) == {model_tag}
    assert out.column("row").to_pylist() == list(range(1, 101))  # CSV rows numbered as the CLI


def _spark_main(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m credit_risk.portfolio.spark ARGS` on local[2], as spark-submit runs it."""
    return subprocess.run(
        [sys.executable, "-m", "credit_risk.portfolio.spark", *args, "--master", "local[2]"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
        check=False,
    )


def _by_row(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["row"], r.get("field") or ""))


RUN_FACTS = (
    "status",
    "model",
    "input",
    "input_sha256",
    "rows_read",
    "rows_scored",
    "rows_quarantined",
    "duplicate_id_rows",
    "empty_id_rows",
    "message",
)
"""What the two engines' audit records must agree on (ids, paths, times and engine differ)."""


@pytest.mark.slow
@pytest.mark.integration
def test_spark_equals_the_cli_on_a_malformed_csv(
    model_tag: str, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    src = malformed_csv(applicants, tmp_path / "book.csv")
    ids = ["--id-column", "account_id", "--model", model_tag]
    cli = CliRunner().invoke(
        main,
        ["score", str(src), str(tmp_path / "cli.parquet"), *ids]
        + ["--audit-log", str(tmp_path / "cli.jsonl")],
    )
    spark = _spark_main(
        tmp_path, str(src), str(tmp_path / "spark"), *ids, "--audit-log", str(tmp_path / "s.jsonl")
    )
    cli_line = cli.output.strip().splitlines()[-1]
    spark_line = spark.stderr.strip().splitlines()[-1]
    print(
        f"\nCLI   (exit {cli.exit_code}): {cli_line}\nSpark (exit {spark.returncode}): {spark_line}"
    )
    assert (cli.exit_code, spark.returncode) == (3, 3), spark.stderr[-3000:]
    for line in (cli_line, spark_line):
        assert "12 scored, 13 quarantined of 25 rows" in line
        assert "; 1 rows repeat an earlier id (scored); 4 rows have an empty id (scored)" in line

    cli_q = _by_row(pq.read_table(tmp_path / "cli.quarantine.parquet").to_pylist())
    spark_q = _by_row(pq.read_table(tmp_path / "spark.quarantine").to_pylist())
    for a, b in zip(cli_q, spark_q, strict=False):
        cells = [f"{r['row']:>3} {r['field']!s:<17}{r['reason'][:34]:<36}" for r in (a, b)]
        print(" | ".join(cells))
    assert spark_q == cli_q
    malformed = {r["row"] for r in cli_q if r["field"] is None}
    assert malformed == {2, 3, 17, 20}  # extra, missing, blanks, extra with a quoted comma
    assert {r["row"] for r in cli_q} == {2, 3, 4, 5, 6, 7, 13, 14, 15, 17, 19, 20, 21}
    assert {r["reason"] for r in cli_q if r["row"] in (2, 20)} == {
        "malformed CSV row: 20 fields, expected 19"
    }

    drop = ["run_id"]
    cli_rows = pq.read_table(tmp_path / "cli.parquet").drop_columns(drop).to_pylist()
    spark_rows = _by_row(pq.read_table(tmp_path / "spark").drop_columns(drop).to_pylist())
    assert spark_rows == cli_rows
    scored = {r["row"]: r["account_id"] for r in cli_rows}
    assert scored[12] == "ACC,1011"  # a quoted comma
    assert scored[16] == "ACC\n1015"  # a quoted line break
    assert sorted(scored) == [1, 8, 9, 10, 11, 12, 16, 18, 22, 23, 24, 25]
    assert {n for n, kind in MALFORMED_KINDS.items() if "(valid)" in kind} <= set(scored)

    (cli_run,) = read_runs(tmp_path / "cli.jsonl")
    (spark_run,) = read_runs(tmp_path / "s.jsonl")
    assert {k: spark_run[k] for k in RUN_FACTS} == {k: cli_run[k] for k in RUN_FACTS}
    assert (cli_run["engine"], spark_run["engine"]) == ("credit-risk score", "spark")


@pytest.mark.slow
@pytest.mark.integration
def test_spark_refusals_are_recorded_and_exit_2(
    spark_session: Any, model_tag: str, applicants: list[dict[str, Any]], tmp_path: Path
) -> None:
    table = book(applicants[:5]).drop_columns(["purpose"])
    cases = {
        "missing column": (write(table, tmp_path / "book.parquet"), "missing column(s) 'purpose'"),
        "no such file": (tmp_path / "absent.parquet", "not readable"),
        "header only": (tmp_path / "empty.csv", "no data rows"),
    }
    (tmp_path / "empty.csv").write_text("account_id," + ",".join(book([]).column_names[1:]) + "\n")
    for name, (src, message) in cases.items():
        args = portfolio_spark.parse_args(
            [str(src), str(tmp_path / name), "--model", model_tag]
            + ["--audit-log", str(tmp_path / "runs.jsonl")]
        )
        with pytest.raises(RefusedInputError, match=re.escape(f"{src}: {message}")):
            portfolio_spark.run(args, spark_session)
    runs = read_runs(tmp_path / "runs.jsonl")
    assert [(r["status"], r["engine"]) for r in runs] == [("refused", "spark")] * len(cases)
