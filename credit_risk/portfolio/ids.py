"""Row ids as a run reports them: empty ids, and ids that repeat an earlier row's.

A row's id is empty when any `--id-column` is null or text of blanks only (spaces, tabs, line
breaks; an empty CSV field is null). Such rows are scored and counted as empty ids, never as
repeats of one another. Repeats are counted among the rows with a complete id: rows whose id
equals an earlier row's. Both counts cover the rows that could be read into fields (a malformed
CSV row has none).
`credit-risk score` counts them batch by batch (`IdCounter`), its Spark twin in one aggregation
(`spark_id_counts`), by the same definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BoolArray = npt.NDArray[np.bool_]

BLANK: Final = r"^[ \t\r\n]*$"
"""Text that counts as an empty id: the same pattern for Arrow (RE2) and Spark (Java)."""


def empty_ids(batch: pa.RecordBatch, id_columns: Sequence[str]) -> BoolArray:
    """Per row: is any id column null, or text of blanks only?"""
    empty = np.zeros(batch.num_rows, dtype=bool)
    for name in id_columns:
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        missing = column.is_null()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            blank = pc.fill_null(pc.match_substring_regex(column, BLANK), False)
            missing = pc.or_(missing, blank)
        empty |= np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool)
    return empty


@dataclass
class IdCounter:
    """Empty ids and repeats over a run's batches (an 8-byte key per complete id: exact for
    one integer id column, a 64-bit hash otherwise)."""

    id_columns: tuple[str, ...]
    empty: int = 0
    keys: list[npt.NDArray[np.uint64]] = field(default_factory=list)

    def add(self, batch: pa.RecordBatch) -> None:
        """Count one batch's rows."""
        empty = empty_ids(batch, self.id_columns)
        self.empty += int(empty.sum())
        self.keys.append(_keys(batch.filter(pa.array(~empty)), self.id_columns))

    def repeated(self) -> int:
        """Rows whose complete id equals an earlier row's."""
        if not self.keys:
            return 0
        ordered = np.concatenate(self.keys)
        ordered.sort()  # in place: 8 bytes per row in all
        return int(np.count_nonzero(ordered[1:] == ordered[:-1]))


def _keys(batch: pa.RecordBatch, id_columns: Sequence[str]) -> npt.NDArray[np.uint64]:
    """A 64-bit key per row from its id columns (exact for one integer column)."""
    key = np.zeros(batch.num_rows, dtype=np.uint64)
    for name in id_columns:
        column = batch.column(name)
        if pa.types.is_integer(column.type) and column.null_count == 0:
            part = column.to_numpy().astype(np.int64).view(np.uint64)
        else:
            part = np.array([hash(v) for v in column.to_pylist()], dtype=np.int64).view(np.uint64)
        with np.errstate(over="ignore"):
            key = key * np.uint64(1_000_003) ^ part
    return key


def spark_empty_id(frame: DataFrame, id_columns: Sequence[str]) -> Column:
    """The same test as `empty_ids`, as a Spark column expression."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415
    from pyspark.sql.types import StringType  # noqa: PLC0415

    tests = []
    for name in id_columns:
        column = F.col(name)
        test = column.isNull()
        if isinstance(frame.schema[name].dataType, StringType):
            test = test | column.rlike(BLANK)
        tests.append(test)
    empty = tests[0]
    for test in tests[1:]:
        empty = empty | test
    return empty


def spark_id_counts(
    frame: DataFrame, id_columns: Sequence[str], readable: Column
) -> dict[str, Column]:
    """Aggregations for `DataFrame.agg` over the `readable` rows: empty ids, complete ids and
    distinct complete ids (repeats are the complete ids less the distinct ones)."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415

    empty = spark_empty_id(frame, id_columns)
    complete = F.when(readable & ~empty, F.struct(*[F.col(c) for c in id_columns]))
    return {
        "empty_ids": F.sum((readable & empty).cast("int")),
        "complete_ids": F.count(complete),
        "distinct_ids": F.count_distinct(complete),
    }
