"""Streaming Parquet/CSV readers and all-or-nothing writers, chosen by file extension.

Readers yield bounded record batches with the input row number of each row, so a 10-million-row
file never sits in memory. Writers write to a temporary name beside the target and rename only
when the whole job has succeeded: nothing partial is ever left where an output should be.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from credit_risk.portfolio import RefusedInputError
from credit_risk.schema import CATEGORIES

FORMATS: Final = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
"""File extension -> format, for inputs and outputs alike."""
BATCH_ROWS: Final = 65_536
"""Rows per record batch: large enough to amortise per-call costs, ~10 MB decoded."""
CSV_BLOCK_BYTES: Final = 8 << 20
"""CSV bytes parsed per block (one batch), ~60k applicants."""
MALFORMED_TEXT_CHARS: Final = 200
"""Characters of a malformed CSV row kept in its quarantine record."""


def malformed_reason(fields: int, expected: int) -> str:
    """Why a CSV row could not be read into the header's fields (the CLI and Spark say it so)."""
    return f"malformed CSV row: {fields} fields, expected {expected}"


def file_format(path: Path) -> str:
    """'parquet' or 'csv' from the extension; anything else is refused."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        msg = f"{path}: unknown file type {path.suffix!r} (use {', '.join(FORMATS)})"
        raise RefusedInputError(msg)
    return kind


@dataclass
class Source:
    """An opened input: its columns' schema, its size when known, and its batches."""

    path: Path
    schema: pa.Schema
    total_rows: int | None
    batches: Iterator[tuple[pa.RecordBatch, npt.NDArray[np.int64]]]
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    """(row, reason, text) of CSV rows that could not be split into fields, as they are met."""


def open_source(path: Path, columns: Sequence[str], batch_rows: int = BATCH_ROWS) -> Source:
    """Open `path` for streaming the named columns; refuse a missing, empty or unreadable file."""
    kind = file_format(path)
    if not path.is_file():
        msg = f"{path}: no such file"
        raise RefusedInputError(msg)
    if path.stat().st_size == 0:
        msg = f"{path}: the file is empty"
        raise RefusedInputError(msg)
    if kind == "parquet":
        return _parquet_source(path, columns, batch_rows)
    return _csv_source(path, columns)


def column_names(path: Path) -> list[str]:
    """The input's column names, read from its header or footer only (nothing if unreadable:
    opening it for real then says why)."""
    try:
        if file_format(path) == "parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
        return _csv_header(path)
    except (RefusedInputError, pa.ArrowException, OSError):
        return []


def _parquet_source(path: Path, columns: Sequence[str], batch_rows: int) -> Source:
    try:
        plain = pq.ParquetFile(path).schema_arrow
        # categories straight as Arrow dictionaries: no per-row strings are materialised
        text = [f.name for f in plain if f.name in CATEGORIES and pa.types.is_string(f.type)]
        reader = pq.ParquetFile(path, read_dictionary=text)
    except (pa.ArrowException, OSError) as exc:
        msg = f"{path}: not a readable Parquet file ({_one_line(exc)})"
        raise RefusedInputError(msg) from None
    schema = reader.schema_arrow
    wanted = [c for c in columns if c in schema.names]

    def batches() -> Iterator[tuple[pa.RecordBatch, npt.NDArray[np.int64]]]:
        first = 1
        for batch in reader.iter_batches(batch_size=batch_rows, columns=wanted):
            yield batch, np.arange(first, first + batch.num_rows, dtype=np.int64)
            first += batch.num_rows

    selected = pa.schema([schema.field(c) for c in wanted])
    return Source(path, selected, reader.metadata.num_rows, batches())


def _csv_source(path: Path, columns: Sequence[str]) -> Source:
    header = _csv_header(path)
    wanted = [c for c in columns if c in header]
    source = Source(path, pa.schema([(c, pa.string()) for c in wanted]), None, iter(()))

    def skip(row: pacsv.InvalidRow) -> str:
        # `number` is the physical line (header = line 1); text is the row as read
        reason = malformed_reason(row.actual_columns, row.expected_columns)
        source.malformed.append((int(row.number or 0) - 1, reason, row.text[:MALFORMED_TEXT_CHARS]))
        return "skip"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
            # a quoted value may hold a line break, wherever a block boundary falls
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip, newlines_in_values=True),
            # every value as text: numbers are parsed (and quarantined) per value, ids kept as is
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types=dict.fromkeys(wanted, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        msg = f"{path}: not a readable CSV file ({_one_line(exc)})"
        raise RefusedInputError(msg) from None
    source.batches = _numbered(reader, source.malformed)
    return source


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        msg = f"{path}: not a readable CSV file ({_one_line(exc)})"
        raise RefusedInputError(msg) from None
    if not header:
        msg = f"{path}: no header row"
        raise RefusedInputError(msg)
    return header


def _numbered(
    reader: pacsv.CSVStreamingReader, malformed: list[tuple[int, str, str]]
) -> Iterator[tuple[pa.RecordBatch, npt.NDArray[np.int64]]]:
    """Number rows as in the file: rows skipped as malformed keep their numbers."""
    position = 0
    for batch in reader:
        skipped = np.sort(np.array([row for row, _, _ in malformed], dtype=np.int64))
        # the p-th good row (0-based) is the (p+1)-th row number not among `skipped`
        shift = skipped - np.arange(len(skipped))
        wanted = np.arange(position + 1, position + 1 + batch.num_rows, dtype=np.int64)
        rows = wanted + np.searchsorted(shift, wanted, side="right")
        position += batch.num_rows
        yield batch, rows


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class AtomicWriter:
    """Writes batches to a temporary file beside `path`; `commit` renames it into place."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.kind = file_format(path)
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        self._writer: pq.ParquetWriter | pacsv.CSVWriter
        if self.kind == "parquet":
            self._writer = pq.ParquetWriter(self.temp, schema)
        else:
            self._writer = pacsv.CSVWriter(self.temp, schema)
        self._open = True

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch (empty batches are skipped)."""
        if batch.num_rows:
            self._writer.write_batch(batch)

    def commit(self) -> None:
        """Close and move the finished file to its name."""
        self._close()
        self.temp.replace(self.path)

    def abort(self) -> None:
        """Close and delete the temporary file: the target is left as it was."""
        self._close()
        self.temp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()
