"""The serving side stays light: importing the service pulls in no training or lifecycle library.

A fresh interpreter imports `service` (both BentoML services, every serving module) and loads
the served model the way the runner does; none of the heavy libraries may appear in
`sys.modules`. This is the check that keeps scikit-learn, pandas, SciPy and matplotlib (and the
optional Prefect, MLflow, PyArrow and PySpark) out of the serving processes' start-up and memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, TEST_HOME

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
import json, sys
import service
from credit_risk.model_store import load_serving_model
load_serving_model(service.SETTINGS.model_tag)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_the_service_imports_no_training_or_lifecycle_library(model_tag: str) -> None:
    env = {
        **os.environ,
        "BENTOML_HOME": str(TEST_HOME),
        "CREDIT_RISK_MODEL": model_tag,
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "service" in loaded
    assert "bentoml" in loaded
    assert sorted(loaded & set(FORBIDDEN)) == []
