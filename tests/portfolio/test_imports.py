"""PyArrow and PySpark stay optional: the API and the console script never import them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("module", ["service", "credit_risk.cli"])
def test_serving_and_cli_import_no_portfolio_dependencies(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted({'pyarrow', 'pyspark', 'credit_risk.portfolio'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
