"""The serving side stays light: importing the service pulls in no training or lifecycle library.

A fresh interpreter imports `service` (both BentoML services, every serving module) and loads
the served model the way the runner does; none of the heavy libraries may appear in
`sys.modules`. This is the check that keeps scikit-learn, pandas, SciPy and matplotlib (and the
optional Prefect, MLflow, PyArrow and PySpark) out of the serving processes' start-up and memory.
"""

from __future__ import annotations

from tests.conftest import TEST_HOME, imported_modules

FORBIDDEN = (
    "sklearn",
    "pandas",
    "scipy",
    "matplotlib",
    "prefect",
    "mlflow",
    "pyspark",
    "pyarrow",
)

PROBE = """
import service
from credit_risk.model_store import load_serving_model
load_serving_model(service.SERVED.champion)
"""


def test_the_service_imports_no_training_or_lifecycle_library(model_tag: str) -> None:
    loaded = imported_modules(
        PROBE, env={"BENTOML_HOME": str(TEST_HOME), "CREDIT_RISK_MODEL": model_tag}
    )
    top_level = {name.split(".")[0] for name in loaded}
    assert {"service", "bentoml"} <= top_level
    assert sorted(top_level & set(FORBIDDEN)) == []
