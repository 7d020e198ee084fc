"""The Spark twin in local mode: the single-process job's rows, quarantine as a second output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from credit_risk.portfolio import spark as portfolio_spark
from credit_risk.portfolio.job import Job, run
from tests.conftest import ROOT
from tests.portfolio.conftest import book, write

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
    )
    start = time.perf_counter()
    portfolio_spark.run(args, spark_session)
    print(f"Spark scored {len(records)} rows in {time.perf_counter() - start:.1f} s")
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
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stderr.strip().splitlines()[-1])
    out = pq.read_table(tmp_path / "out")
    assert out.num_rows == 100
    assert set(out.column("model_version").to_pylist()) == {model_tag}
    assert out.column("row").null_count == 100  # Spark cannot number CSV rows
