"""The environment our entry points start the tools we build on with.

BentoML, Prefect and MLflow each report usage unless told not to, each through its own
environment variable, read when the tool starts; and Prefect's temporary server gets time to
create its database on a busy machine (its default is 20 s). Entry points (the `credit-risk`
command, train.py) call `prepare()` before anything starts; no library module changes the
environment at import.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Final

DEFAULTS: Final = {
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
"""Set where the caller has not set them: no usage reports, a patient Prefect start."""


def prepare(environ: MutableMapping[str, str] = os.environ) -> None:
    """Give every variable of `DEFAULTS` its value unless the caller chose one."""
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
