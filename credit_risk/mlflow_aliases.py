"""Who is champion, shown in MLflow's registry: the `champion` and `challenger` aliases.

The promotion state (`credit_risk.promotion`) is the one source serving reads; after each of its
changes, `credit-risk promote`, `rollback` and `retire-challenger` point MLflow's aliases of the
registered model `credit_risk` at the versions linked to the state's champion and challenger
(the flow saves the version in the BentoML model's metadata, `mlflow_model_version`, and tags
the version with the BentoML tag), and remove an alias whose slot is empty or whose model was
never registered there. Every alias is set from the whole state each time, so one missed
update is repaired by the next (or by `credit-risk champion --sync-mlflow`).

MLflow counts as configured where the flow would track: `MLFLOW_TRACKING_URI`, else an
`mlflow.db` in the working directory (the flow's default store). Otherwise, or without MLflow
installed, nothing is imported and nothing is said. A configured MLflow that cannot be updated
costs one line (`mirror` returns it); the promotion itself stands.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from credit_risk.promotion import PromotionState

TRACKING_URI_ENV: Final = "MLFLOW_TRACKING_URI"
DEFAULT_DB: Final = "mlflow.db"
"""The flow's SQLite tracking store and registry, in the working directory."""
ALIASES: Final = ("champion", "challenger")
"""One alias per promotion slot, named as the slot."""
HTTP_SETTINGS: Final = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""An unreachable tracking server costs seconds, not MLflow's default of minutes of retries
(a variable already set wins)."""


class AliasUpdateError(RuntimeError):
    """A configured MLflow whose aliases could not be updated; the message is one line."""


def configured_uri(environ: Mapping[str, str] = os.environ) -> str | None:
    """The tracking URI promotions mirror to, or None when MLflow is not configured here."""
    uri = environ.get(TRACKING_URI_ENV, "").strip()
    if uri:
        return uri
    db = Path.cwd() / DEFAULT_DB
    return f"sqlite:///{db}" if db.is_file() else None


def mirror(state: PromotionState, environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """Set the aliases from `state` where MLflow is configured: the aliases after, or None
    when MLflow is not configured or not installed. `AliasUpdateError` when MLflow is
    configured but cannot be updated."""
    uri = configured_uri(environ)
    if uri is None or importlib.util.find_spec("mlflow") is None:
        return None
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (only where configured)

        from credit_risk.training import tracking  # noqa: PLC0415
    except ImportError:
        return None
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = {
            alias: tracking.linked_version(client, tag, _saved_version(tag)) if tag else None
            for alias, tag in ((a, getattr(state, a)) for a in ALIASES)
        }
        return tracking.set_aliases(client, versions)
    except Exception as exc:  # any failure of MLflow means the same: aliases not updated
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        msg = f"MLflow aliases not updated at {uri}: {reason}"
        raise AliasUpdateError(msg) from None


def _saved_version(tag: str) -> str | None:
    """The registered version a stored model names in its metadata (None if not stored)."""
    from credit_risk.model_store import RegistryError, stored_metadata  # noqa: PLC0415

    try:
        version = stored_metadata(tag).get("mlflow_model_version")
    except RegistryError:
        return None
    return str(version) if version is not None else None
