"""Portfolio fixtures: the training applicants as a book with account ids."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from credit_risk.schema import FEATURES
from credit_risk.training.data import applicant_records, load_dataset


@pytest.fixture(scope="session")
def applicants() -> list[dict[str, Any]]:
    """The shipped data set's 1,000 applicants as API payloads."""
    return applicant_records(load_dataset().X)


def book(records: list[dict[str, Any]], first_id: int = 1000) -> pa.Table:
    """Applicants as a table with an `account_id` column first (and the schema's column types)."""
    columns: dict[str, Any] = {"account_id": list(range(first_id, first_id + len(records)))}
    columns |= {name: [r[name] for r in records] for name in FEATURES}
    return pa.table(columns)


def write(table: pa.Table, path: Path) -> Path:
    """Parquet or CSV by extension."""
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def _csv_line(values: list[Any]) -> str:
    """One CSV line as a spreadsheet would write it (quotes only where needed)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)  # a value's line break gets quoted
    return out.getvalue().removesuffix("\n")


MALFORMED_KINDS: dict[int, str] = {
    2: "extra field",
    3: "missing field",
    4: "unknown category",
    5: "amount out of range",
    6: "age out of range",
    7: "not a number",
    8: "empty id",
    9: "empty id (quoted)",
    10: "empty id (blanks)",
    11: "repeats row 1's id",
    12: "quoted comma in the id (valid)",
    13: "quoted comma in a category",
    14: "fraction in a whole-number field",
    15: "missing value",
    16: "quoted line break in the id (valid)",
    17: "a line of blanks",
    18: "every field quoted (valid)",
    19: "'nan' as an amount",
    20: "extra field holding a quoted comma",
    21: "blank id and a bad category",
}
"""Data row -> what is wrong with it in `malformed_csv` (a blank line sits before row 13)."""


def malformed_csv(applicants: list[dict[str, Any]], path: Path) -> Path:
    """A CSV book with every kind of malformed row `credit-risk score` quarantines or reports,
    between valid ones: see `MALFORMED_KINDS` (rows 1 and 22 to 25 are valid)."""
    header = ["account_id", *FEATURES]
    rows = [[f"ACC{1000 + i}", *(applicants[i][f] for f in FEATURES)] for i in range(25)]
    col = {name: k for k, name in enumerate(header)}
    lines = {n: _csv_line(rows[n - 1]) for n in range(1, 26)}
    lines[2] += ",surplus"
    lines[3] = _csv_line(rows[2][:-1])
    rows[3][col["purpose"]] = "holiday"
    rows[4][col["credit_amount"]] = -1
    rows[5][col["age_years"]] = 200
    rows[6][col["duration_months"]] = "twelve"
    rows[7][col["account_id"]] = ""
    rows[9][col["account_id"]] = "   "
    rows[10][col["account_id"]] = rows[0][0]
    rows[11][col["account_id"]] = "ACC,1011"
    rows[12][col["purpose"]] = "car_new,used"
    rows[13][col["installment_rate"]] = 2.5
    rows[14][col["savings"]] = ""
    rows[15][col["account_id"]] = "ACC\n1015"
    rows[18][col["credit_amount"]] = "nan"
    rows[20][col["account_id"]] = ""
    rows[20][col["housing"]] = "castle"
    for n in (4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 19, 21):
        lines[n] = _csv_line(rows[n - 1])
    lines[9] = '"",' + _csv_line(rows[8][1:])
    lines[17] = "   "
    lines[18] = ",".join(f'"{v}"' for v in rows[17])
    lines[20] = _csv_line(rows[19]) + ',"a,b"'
    body = [_csv_line(header)]
    for n in range(1, 26):
        if n == 13:
            body.append("")  # a blank line: not a row
        body.append(lines[n])
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path
