"""The portfolio job on Spark: the same batch scoring function per Arrow batch (`mapInArrow`).

    spark-submit credit_risk/portfolio/spark.py INPUT OUTPUT_DIR --id-column account_id \\
        --model-archive credit_risk.bentomodel
    python -m credit_risk.portfolio.spark INPUT OUTPUT_DIR [--model TAG] [--master local[2]]

Executors score with `BatchScorer` (validation, compiled scorer, `DecisionRule.columns`), so
a row gets the same answer as from `credit-risk score` and `/classify`. The model comes from the
BentoML store, or from an archive made with `bentoml models export` that is shipped with the
job and imported (BentoML's own import) into a private store on each executor: executors need
no shared store. Decisions go to OUTPUT_DIR, quarantined rows to OUTPUT_DIR's `.quarantine`
sibling, both Parquet (Spark's directory-of-files layout). For Parquet input the row number is
the row's position in its file; Spark cannot number CSV rows, so there it is null.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from credit_risk.model_store import RegistryError, load_serving_model
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio.io import BATCH_ROWS, file_format
from credit_risk.portfolio.scoring import ROW_COLUMN, BatchScorer, Layout
from credit_risk.promotion import PromotionError, served_tags

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOCAL_SPLIT_BYTES: Final = 4 << 20
"""Input split size in local mode (a cluster keeps its own setting)."""
ROW_INDEX: Final = "_metadata.row_index"
"""Spark's per-file row position for Parquet sources (0-based)."""


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
    tag: str, archive: str | None, run_id: str, ids: tuple[str, ...], *, quarantine: bool
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """What `mapInArrow` runs per partition: decisions, or the quarantine records."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = _executor_scorer(tag, archive, run_id, ids)
        for batch in batches:
            if ROW_COLUMN in batch.schema.names:
                rows = batch.column(ROW_COLUMN).fill_null(0).to_numpy(zero_copy_only=False)
            else:
                rows = np.zeros(batch.num_rows, dtype=np.int64)
            numbers = np.asarray(rows, dtype=np.int64)
            if quarantine:
                out = scorer.quarantine(batch, numbers)
            else:
                out = scorer.score(batch, numbers).decisions
            if ROW_COLUMN not in batch.schema.names:  # CSV on Spark: no row numbers
                out = out.set_column(0, ROW_COLUMN, pa.nulls(out.num_rows, pa.int64()))
            yield out

    return apply


def read_input(spark: SparkSession, path: str, columns: Sequence[str]) -> DataFrame:
    """The input with only the needed columns (and the row number where Spark knows it)."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    if file_format(Path(path)) == "parquet":
        frame = spark.read.parquet(path)
        present = [c for c in columns if c in frame.columns]
        row = (F.col(ROW_INDEX) + 1).alias(ROW_COLUMN)
        return frame.select(row, *present)
    # every CSV value as text, as the single-process job reads it: the contract checks parse
    frame = spark.read.option("header", True).option("mode", "PERMISSIVE").csv(path)
    return frame.select(*[c for c in columns if c in frame.columns])


def score_frame(
    frame: DataFrame, layout: Layout, model: tuple[str, str | None], run_id: str
) -> tuple[DataFrame, DataFrame]:
    """(decisions, quarantine) as lazy DataFrames: the same rule in two `mapInArrow` passes."""
    from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415

    fields = [pa.field(f.name, _arrow_type(f.dataType)) for f in frame.schema]
    arrow_schema = pa.schema([f for f in fields if f.name != ROW_COLUMN])
    layout.check_input(arrow_schema, "input")
    tag, archive = model
    outputs = []
    for quarantine in (False, True):
        schema = (layout.quarantine_schema if quarantine else layout.output_schema)(arrow_schema)
        fn = _batch_function(tag, archive, run_id, layout.id_columns, quarantine=quarantine)
        outputs.append(frame.mapInArrow(fn, from_arrow_schema(schema)))
    return outputs[0], outputs[1]


def _arrow_type(spark_type: Any) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type  # noqa: PLC0415

    result: pa.DataType = to_arrow_type(spark_type)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, as `spark-submit` or `python -m` passes it."""
    parser = argparse.ArgumentParser(prog="credit_risk.portfolio.spark", description=__doc__)
    parser.add_argument("input", help="Parquet or CSV file or directory (any Spark path)")
    parser.add_argument("output", help="output directory (Parquet)")
    parser.add_argument("--id-column", action="append", default=[], dest="id_columns")
    parser.add_argument("--model", default=None, help="tag in the BentoML store")
    parser.add_argument("--model-archive", default=None, help="file from `bentoml models export`")
    parser.add_argument("--quarantine", default=None, help="default: OUTPUT.quarantine")
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


def run(args: argparse.Namespace, spark: SparkSession) -> dict[str, Any]:
    """Score `args.input` into `args.output` (and the quarantine) on an existing session.

    The driver plans from the columns alone; only the executors load (or import) the model.
    """
    run_id = args.run_id or uuid.uuid4().hex
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
    model = (tag, archive)
    layout = Layout(tuple(args.id_columns))
    frame = read_input(spark, args.input, layout.input_columns())
    decisions, quarantine = score_frame(frame, layout, model, run_id)
    start = time.perf_counter()
    decisions.write.mode("overwrite").parquet(args.output)
    quarantine_dir = args.quarantine or f"{args.output.rstrip('/')}.quarantine"
    quarantine.write.mode("overwrite").parquet(quarantine_dir)
    return {
        "run_id": run_id,
        "model": "archive " + archive if archive else model[0],
        "output": args.output,
        "quarantine": quarantine_dir,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `spark-submit` and `python -m credit_risk.portfolio.spark`."""
    args = parse_args(argv)
    spark, startup = session(args.master)
    try:
        result = run(args, spark)
    except RefusedInputError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print(
        f"run {result['run_id']}: {result['model']} -> {result['output']} "
        f"(quarantine {result['quarantine']}) in {result['seconds']:.1f} s; "
        f"Spark session started in {startup:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    # run the importable module's `main`, so Spark pickles references executors can resolve
    from credit_risk.portfolio.spark import main as importable_main

    sys.exit(importable_main())
