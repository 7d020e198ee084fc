"""Portfolio scoring: a whole book of applicants through the served model, in one job.

`credit-risk score` streams Arrow record batches from Parquet or CSV, validates them column by
column against `credit_risk.schema`, and scores them with the same compiled scorer and decision
rule as the API (`credit_risk.portfolio.scoring`); `credit_risk.portfolio.spark` applies the same
batch function on Spark. PyArrow is the optional `portfolio` dependency group, PySpark the
`spark` group: nothing on the serving side imports this package.
"""

from __future__ import annotations

from typing import Final

INSTALL_HINT: Final = "pip install 'credit-risk-bento[portfolio]' (or `make setup`)"
"""What to run when PyArrow is missing."""


class RefusedInputError(ValueError):
    """The input cannot be scored at all (a missing column, an unreadable file, bad arguments).

    The message is one line naming the file and what is wrong; nothing is written.
    """
