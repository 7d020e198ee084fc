"""Refuse to serve a model that cannot be served: one clear line, then stop, never a loop.

Upstream (BentoML 1.4.40, checked): `bentoml serve` resolves every model a service references
in its supervisor process before it starts a worker, and for a tag missing from the local store
it asks BentoCloud (a network call wherever a cloud context is configured) and then fails with a
message that says nothing of how to get a model. A model that is present but unreadable or
trained for another schema passes that step; the runner's `__init__` then raises, BentoML logs a
traceback per attempt and its supervisor (circus) restarts the worker every ~10 s for ever,
while the API workers come up and `/readyz` hangs (tests/service/test_faults.py measured it).

Here the reference resolves from the local store only and, in the supervisor, proves the model
loads (`credit_risk.model_store.load_serving_model`) before any worker starts: `bentoml serve`
exits with status 1 and one line, the model store's message, which says what is missing and how
to fix it. Should a worker still meet an unservable model later (a runner restarted after its
files were damaged), it logs that one line, stops the whole server and exits with status 3.
The canaries in tests/serving/workarounds/test_model_reference.py fail once upstream's
`BentoModel` stops falling back to the cloud or its supervisor stops restarting a failed worker
for ever; then delete the part that became unnecessary.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import bentoml
from bentoml._internal.context import server_context
from bentoml.exceptions import BentoMLException

from credit_risk.model_store import (
    RegistryError,
    invalid_tag,
    invalid_tag_message,
    load_serving_model,
    not_found,
    not_found_message,
)
from credit_risk.promotion import challenger_refusal

logger = logging.getLogger(__name__)

WORKER_BOOT_ERROR: Final = 3
"""Exit status of a worker that cannot load its model (gunicorn's and uvicorn's value for a
worker that failed to boot)."""


class ModelNotServableError(BentoMLException):
    """The served model is missing, unreadable or for another schema.

    A BentoML exception, so the `bentoml` CLI prints its message as one line and exits 1
    instead of printing a traceback. `problem` is the message without its remedy.
    """

    def __init__(self, message: str, *, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem or message


class LocalModel(bentoml.models.BentoModel):  # type: ignore[misc]
    """A model reference that resolves from the local store only and refuses unservable models.

    `bentoml build` still records it like any `BentoModel`.
    """

    def resolve(self, base_path: Any = None) -> Any:
        """The stored model; in the supervisor (no worker index yet) also proven loadable."""
        if base_path is None and server_context.worker_index is None:
            try:
                load_serving_model(str(self.tag))
            except RegistryError as exc:
                raise ModelNotServableError(str(exc), problem=exc.problem) from None
        if self.stored is None:
            raise _not_found(str(self.tag))
        return super().resolve(base_path)

    def to_info(self, alias: str | None = None) -> Any:
        """What `bentoml build` records; a tag missing locally is an error, not a cloud query."""
        if self.stored is None:
            raise _not_found(str(self.tag))
        return super().to_info(alias)


def _not_found(tag: str) -> ModelNotServableError:
    return ModelNotServableError(not_found_message(tag), problem=not_found(tag))


class ChallengerModel(LocalModel):
    """The challenger's reference: refused the same way, with a line that says it is the
    challenger and what to do about it."""

    def resolve(self, base_path: Any = None) -> Any:
        """As `LocalModel.resolve`, the refusal naming the challenger and its remedies."""
        try:
            return super().resolve(base_path)
        except ModelNotServableError as exc:
            raise ModelNotServableError(challenger_message(exc)) from None

    def to_info(self, alias: str | None = None) -> Any:
        """As `LocalModel.to_info`, the refusal naming the challenger and its remedies."""
        try:
            return super().to_info(alias)
        except ModelNotServableError as exc:
            raise ModelNotServableError(challenger_message(exc)) from None


def challenger_message(error: Exception) -> str:
    """One line for an unservable challenger: what is wrong, and the challenger's remedies
    (the champion's, CREDIT_RISK_MODEL, would change the wrong model)."""
    problem = error.problem if isinstance(error, RegistryError | ModelNotServableError) else error
    return challenger_refusal(str(problem))


def served_model(tag: str, *, challenger: bool = False) -> LocalModel:
    """The service's model reference; a malformed tag fails here with the same kind of line."""
    try:
        return ChallengerModel(tag) if challenger else LocalModel(tag)
    except ValueError as exc:
        if challenger:
            raise ModelNotServableError(challenger_refusal(invalid_tag(tag, exc))) from None
        raise ModelNotServableError(invalid_tag_message(tag, exc)) from None


@contextmanager
def refuse_unservable_model() -> Iterator[None]:
    """Around a service's model loading: in a server worker, an unservable model ends the
    server with one ERROR line; anywhere else (tests, scripts) the error propagates."""
    try:
        yield
    except (RegistryError, ModelNotServableError) as exc:
        if server_context.worker_index is None:
            raise
        logger.error("cannot serve: %s", exc)
        _stop_supervisor()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(WORKER_BOOT_ERROR)


def _stop_supervisor() -> None:
    """Ask the `bentoml serve` supervisor to shut every worker down: without it, it would
    restart this worker every ~10 s and fail the same way each time."""
    parent = os.getppid()
    try:  # Linux, where servers run; elsewhere the supervisor keeps restarting the worker
        argv = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if any(a.endswith(b"bentoml") for a in argv) and b"serve" in argv:  # never anything else
        os.kill(parent, signal.SIGTERM)
