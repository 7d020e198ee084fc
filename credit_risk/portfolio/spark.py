"""The portfolio job on Spark: the same batch scoring function per Arrow batch (`mapInArrow`).

    spark-submit credit_risk/portfolio/spark.py INPUT OUTPUT_DIR --id-column account_id \\
        --model-archive credit_risk.bentomodel
    python -m credit_risk.portfolio.spark INPUT OUTPUT_DIR [--model TAG] [--master local[2]]

Executors score with `BatchScorer` (validation, compiled scorer, `DecisionRule.columns`), so
a row gets the same answer as from `credit-risk score` and `/classify`. The model comes from the
BentoML store, or from an archive made with `bentoml models export` that is shipped with the
job and imported (BentoML's own import) into a private store on each executor: executors need
no shared store. Decisions go to OUTPUT_DIR, quarantined rows to OUTPUT_DIR's `.quarantine`
sibling, both Parquet (Spark's directory-of-files layout).

It equals `credit-risk score` on every input that command accepts or quarantines: the same
quarantine records (a CSV row with too many or too few fields is kept whole by Spark's
PERMISSIVE mode in a corrupt-record column and quarantined as malformed, never trimmed or
padded and scored), the same row numbers (a Parquet row's position in its file; a CSV file is
read whole by one task, as CSV with line breaks inside quoted values must be, and its rows are
counted in order), the same counts of repeated and empty ids (`credit_risk.portfolio.ids`), the
same audit record and the same exit codes: 0 all scored, 3 some quarantined, 2 refused, 1
failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from credit_risk.model_store import RegistryError, load_serving_model
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio.ids import spark_id_counts
from credit_risk.portfolio.io import (
    BATCH_ROWS,
    MALFORMED_TEXT_CHARS,
    file_format,
    malformed_reason,
)
from credit_risk.portfolio.job import Summary, audited, file_sha256
from credit_risk.portfolio.scoring import ROW_COLUMN, BatchScorer, Layout, malformed_rows
from credit_risk.promotion import PromotionError, served_tags

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOCAL_SPLIT_BYTES: Final = 4 << 20
"""Input split size in local mode (a cluster keeps its own setting)."""
ROW_INDEX: Final = "_metadata.row_index"
"""Spark's per-file row position for Parquet sources (0-based)."""
FILE_PATH: Final = "_metadata.file_path"
FILE_COLUMN: Final = "_file"
"""The input file of each CSV row, for numbering rows per file (not written)."""
CORRUPT: Final = "_corrupt_record"
"""A CSV row that does not have the header's number of fields, as text (null otherwise)."""
CSV_OPTIONS: Final = {
    "header": "true",
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT,
    "multiLine": "true",  # quoted line breaks, as PyArrow reads them; one task per file
    "escape": '"',  # a quote inside a quoted value is doubled (RFC 4180), as PyArrow reads it
    "enforceSchema": "false",  # every file's header must name the same columns
}
"""How Spark reads a CSV book so that every row comes out as `credit-risk score` reads it."""


@cache
def _imported_tag(archive: str) -> str:
    """Once per Python worker: the archive imported into a private store (BentoML's import)."""
    # before anything resolves BentoML's home in this worker process
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="credit-risk-executor-home-")
    import bentoml  # noqa: PLC0415

    return str(bentoml.models.import_model(archive).tag)


@cache
def _executor_scorer(
    tag: str, archive: str | None, run_id: str, ids: tuple[str, ...]
) -> BatchScorer:
    """Once per Python worker and run: the model, from the archive if one was shipped."""
    return BatchScorer.load(_imported_tag(archive) if archive else tag, run_id, ids)


def _batch_function(
    tag: str,
    archive: str | None,
    run_id: str,
    ids: tuple[str, ...],
    *,
    quarantine: bool,
    fields: int | None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """What `mapInArrow` runs per partition: decisions, or the quarantine records. `fields` is
    a CSV header's field count (None for Parquet)."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = _executor_scorer(tag, archive, run_id, ids)
        counted: dict[str, int] = defaultdict(int)  # CSV rows met so far, per input file
        for batch in batches:
            rows = _row_numbers(batch, counted)
            malformed = _malformed(batch)
            readable = batch.filter(pa.array(~malformed)) if malformed.any() else batch
            if not quarantine:
                yield scorer.score(readable, rows[~malformed]).decisions
                continue
            out = scorer.quarantine(readable, rows[~malformed])
            yield out
            if malformed.any() and fields is not None:
                records = _malformed_records(batch, rows, malformed, fields)
                yield malformed_rows(out.schema, records, ids)

    return apply


def _row_numbers(batch: pa.RecordBatch, counted: dict[str, int]) -> npt.NDArray[np.int64]:
    """Each row's number in its input file (1 = first data row), as the CLI counts it.

    Parquet: Spark's row position. CSV: a file is read whole by one task, in order (multiLine
    CSV is never split), so rows are counted per file across the partition's batches.
    """
    if ROW_COLUMN in batch.schema.names:
        return np.asarray(batch.column(ROW_COLUMN).to_numpy(zero_copy_only=False), np.int64)
    rows = np.empty(batch.num_rows, dtype=np.int64)
    if not batch.num_rows:
        return rows
    files = batch.column(FILE_COLUMN)
    changes = pc.not_equal(files.slice(1), files.slice(0, batch.num_rows - 1))
    starts = [0, *(np.flatnonzero(changes.to_numpy(zero_copy_only=False)) + 1).tolist()]
    for begin, end in zip(starts, [*starts[1:], batch.num_rows], strict=True):
        file = str(files[begin].as_py())
        rows[begin:end] = np.arange(counted[file] + 1, counted[file] + 1 + end - begin)
        counted[file] += end - begin
    return rows


def _malformed(batch: pa.RecordBatch) -> npt.NDArray[np.bool_]:
    """Rows Spark could not split into the header's fields (CSV only)."""
    if CORRUPT not in batch.schema.names:
        return np.zeros(batch.num_rows, dtype=bool)
    return ~np.asarray(batch.column(CORRUPT).is_null().to_numpy(zero_copy_only=False), bool)


def _malformed_records(
    batch: pa.RecordBatch,
    rows: npt.NDArray[np.int64],
    malformed: npt.NDArray[np.bool_],
    fields: int,
) -> list[tuple[int, str, str]]:
    """(row, reason, text) per malformed row, as the CLI records it (the row's field count
    re-read from its text with Python's CSV reader: the dialect both readers share)."""
    where = np.flatnonzero(malformed)
    texts = batch.column(CORRUPT).take(pa.array(where)).to_pylist()
    return [
        (int(rows[i]), malformed_reason(_field_count(text), fields), text[:MALFORMED_TEXT_CHARS])
        for i, text in zip(where.tolist(), texts, strict=True)
    ]


def _field_count(text: str) -> int:
    return len(next(csv.reader(io.StringIO(text, newline="")), []))


def read_input(
    spark: SparkSession, path: str, columns: Sequence[str]
) -> tuple[DataFrame, int | None]:
    """The input with only the needed columns, and the row number (Parquet) or the file and
    the malformed-row text (CSV); and a CSV header's field count (None for Parquet)."""
    from pyspark.errors import AnalysisException  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: N812, PLC0415
    from pyspark.sql.types import StringType, StructField, StructType  # noqa: PLC0415

    try:
        if file_format(Path(path)) == "parquet":
            frame = spark.read.parquet(path)
            present = [c for c in columns if c in frame.columns]
            row = (F.col(ROW_INDEX) + 1).alias(ROW_COLUMN)
            return frame.select(row, *present), None
        # every CSV value as text, as the single-process job reads it: the contract checks parse
        header = spark.read.option("header", True).csv(path).columns
        schema = StructType([StructField(c, StringType()) for c in [*header, CORRUPT]])
        frame = spark.read.schema(schema).options(**CSV_OPTIONS).csv(path)
    except AnalysisException as exc:  # no such path, no readable file
        reason = " ".join(str(exc).split("\n")[0].split())
        msg = f"{path}: not readable ({reason})"
        raise RefusedInputError(msg) from None
    present = [c for c in columns if c in header]
    file = F.col(FILE_PATH).alias(FILE_COLUMN)
    return frame.select(file, *present, CORRUPT), len(header)


def score_frame(
    frame: DataFrame,
    layout: Layout,
    model: tuple[str, str | None],
    run_id: str,
    *,
    fields: int | None = None,
    where: str = "input",
) -> tuple[DataFrame, DataFrame]:
    """(decisions, quarantine) as lazy DataFrames: the same rule in two `mapInArrow` passes;
    an input the job cannot score is refused first (`where` names it)."""
    from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415

    arrow_schema = _input_schema(frame)
    layout.check_input(arrow_schema, where)
    tag, archive = model
    outputs = []
    for quarantine in (False, True):
        schema = (layout.quarantine_schema if quarantine else layout.output_schema)(arrow_schema)
        fn = _batch_function(
            tag, archive, run_id, layout.id_columns, quarantine=quarantine, fields=fields
        )
        outputs.append(frame.mapInArrow(fn, from_arrow_schema(schema)))
    return outputs[0], outputs[1]


def _input_schema(frame: DataFrame) -> pa.Schema:
    """The applicant and id columns as Arrow types (without Spark's bookkeeping columns)."""
    internal = {ROW_COLUMN, FILE_COLUMN, CORRUPT}
    fields = [pa.field(f.name, _arrow_type(f.dataType)) for f in frame.schema]
    return pa.schema([f for f in fields if f.name not in internal])


def _arrow_type(spark_type: Any) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type  # noqa: PLC0415

    result: pa.DataType = to_arrow_type(spark_type)
    return result


def account(frame: DataFrame, id_columns: Sequence[str]) -> dict[str, int]:
    """One pass over the input: rows read (malformed CSV rows included), and the empty and
    repeated ids among the rows that could be read into fields."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    malformed = F.col(CORRUPT).isNotNull() if CORRUPT in frame.columns else F.lit(False)
    data = [c for c in frame.columns if c not in {ROW_COLUMN, FILE_COLUMN, CORRUPT}]
    aggregations = {
        "rows_read": F.count(F.lit(1)),
        # Spark refuses a query that reads the corrupt-record column alone: read a field too
        "fields_read": F.count(F.col(data[0])),
    }
    if id_columns:
        aggregations |= spark_id_counts(frame, id_columns, ~malformed)
    (totals,) = frame.agg(*[a.alias(k) for k, a in aggregations.items()]).collect()
    counts = {k: int(totals[k] or 0) for k in aggregations}
    return {
        "rows_read": counts["rows_read"],
        "empty_id_rows": counts.get("empty_ids", 0),
        "duplicate_id_rows": counts.get("complete_ids", 0) - counts.get("distinct_ids", 0),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, as `spark-submit` or `python -m` passes it."""
    parser = argparse.ArgumentParser(prog="credit_risk.portfolio.spark", description=__doc__)
    parser.add_argument("input", help="Parquet or CSV file or directory (any Spark path)")
    parser.add_argument("output", help="output directory (Parquet)")
    parser.add_argument("--id-column", action="append", default=[], dest="id_columns")
    parser.add_argument("--model", default=None, help="tag in the BentoML store")
    parser.add_argument("--model-archive", default=None, help="file from `bentoml models export`")
    parser.add_argument("--quarantine", default=None, help="default: OUTPUT.quarantine")
    parser.add_argument(
        "--audit-log",
        default=None,
        help="JSON-lines run log on the driver (default: $CREDIT_RISK_PORTFOLIO_AUDIT_LOG, "
        "else <BentoML home>/portfolio/runs.jsonl)",
    )
    parser.add_argument("--master", default=None, help="e.g. local[2]; spark-submit sets it")
    parser.add_argument("--run-id", default=None)
    return parser.parse_args(argv)


def session(master: str | None) -> tuple[SparkSession, float]:
    """A Spark session whose Python workers run this interpreter; and its start-up seconds."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession  # noqa: PLC0415

    start = time.perf_counter()
    builder = SparkSession.builder.appName("credit-risk-portfolio")
    # Arrow batches as large as the single-process job's: fewer, cheaper Python calls
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
    if master:
        warehouse = tempfile.mkdtemp(prefix="spark-warehouse-")  # never in the working tree
        builder = builder.master(master).config("spark.ui.enabled", "false")
        builder = builder.config("spark.sql.warehouse.dir", warehouse)
        # split even a single book file into row-group sized tasks, so local cores all score
        builder = builder.config("spark.sql.files.maxPartitionBytes", str(LOCAL_SPLIT_BYTES))
    spark = builder.getOrCreate()
    return spark, time.perf_counter() - start


def run(args: argparse.Namespace, spark: SparkSession) -> Summary:
    """Score `args.input` into `args.output` (and the quarantine) on an existing session, and
    append the run's audit record (refused and failed runs included), as `credit-risk score`.

    The driver plans from the columns alone; only the executors load (or import) the model.
    """
    quarantine_dir = args.quarantine or f"{args.output.rstrip('/')}.quarantine"
    summary = Summary(
        run_id=args.run_id or uuid.uuid4().hex,
        model=args.model or "",
        input=args.input,
        output=args.output,
        quarantine=quarantine_dir,
        engine="spark",
    )
    audit_log = Path(args.audit_log) if args.audit_log else None
    with audited(summary, audit_log, time.perf_counter()):
        _score(args, spark, summary)
    return summary


def _score(args: argparse.Namespace, spark: SparkSession, summary: Summary) -> None:
    archive = str(Path(args.model_archive).resolve()) if args.model_archive else None
    if archive and not Path(archive).is_file():
        msg = f"{args.model_archive}: no such model archive"
        raise RefusedInputError(msg)
    try:
        tag = args.model or served_tags().champion
    except PromotionError as exc:
        raise RefusedInputError(str(exc)) from None
    if not archive:  # pin the version now, so every executor scores with the same one
        try:
            tag = load_serving_model(tag).tag
        except RegistryError as exc:
            raise RefusedInputError(str(exc)) from None
    summary.model = "archive " + archive if archive else tag
    layout = Layout(tuple(args.id_columns))
    frame, fields = read_input(spark, args.input, layout.input_columns())
    model = (tag, archive)
    decisions, quarantine = score_frame(
        frame, layout, model, summary.run_id, fields=fields, where=args.input
    )
    clock = time.perf_counter()
    counts = account(frame, layout.id_columns)
    summary.rows_read = counts["rows_read"]
    summary.duplicate_id_rows = counts["duplicate_id_rows"]
    summary.empty_id_rows = counts["empty_id_rows"]
    if not summary.rows_read:
        msg = f"{args.input}: no data rows"
        raise RefusedInputError(msg)
    if Path(args.input).is_file():
        summary.input_sha256 = file_sha256(Path(args.input))
    summary.stage_seconds["account"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    decisions.write.mode("overwrite").parquet(args.output)
    quarantine.write.mode("overwrite").parquet(summary.quarantine)
    summary.stage_seconds["score and write"] = round(time.perf_counter() - clock, 3)
    summary.rows_scored = spark.read.parquet(args.output).count()
    summary.finish()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `spark-submit` and `python -m credit_risk.portfolio.spark`: the exit
    codes of `credit-risk score` (0 all scored, 3 some quarantined, 2 refused, 1 failed)."""
    args = parse_args(argv)
    spark, startup = session(args.master)
    try:
        summary = run(args, spark)
    except RefusedInputError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the job failed: one line, exit 1, the audit log has the record
        print(f"Error: scoring failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"{summary.line()}; Spark session started in {startup:.1f} s", file=sys.stderr)
    return summary.exit_code


if __name__ == "__main__":
    # run the importable module's `main`, so Spark pickles references executors can resolve
    from credit_risk.portfolio.spark import main as importable_main

    sys.exit(importable_main())
