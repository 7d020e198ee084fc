"""The training side: everything that fits and evaluates a model (scikit-learn, pandas,
matplotlib). The serving side never imports it.

The names below are what the command line needs without paying for those imports.
"""

import os
from typing import Final, Literal

# The pipeline's tools (Prefect, MLflow) read these when they start: no usage reports, and time
# for Prefect's temporary server to create its database on a busy machine (its default is 20 s).
for _name, _value in (
    ("DO_NOT_TRACK", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
):
    os.environ.setdefault(_name, _value)

Family = Literal["logreg", "hgb"]
ModelChoice = Literal["auto", "logreg", "hgb"]

DEFAULT_SEED: Final = 42
FAMILIES: Final[tuple[Family, ...]] = ("logreg", "hgb")
MODEL_CHOICES: Final[tuple[ModelChoice, ...]] = ("auto", *FAMILIES)
