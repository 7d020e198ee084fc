"""PyArrow and PySpark stay optional: the API and the console script never import them."""

from __future__ import annotations

import pytest

from tests.conftest import imported_modules


@pytest.mark.parametrize("module", ["service", "credit_risk.cli"])
def test_serving_and_cli_import_no_portfolio_dependencies(module: str) -> None:
    loaded = imported_modules(f"import {module}")
    assert module in loaded
    assert sorted({"pyarrow", "pyspark", "credit_risk.portfolio"} & loaded) == []
