"""What an operator may set for the service: one pydantic model, read from the environment once.

Every variable is optional and the defaults work with no configuration. BentoML's own knobs
(workers, traffic, monitoring) stay in BentoML's config (`BENTOML_CONFIG`,
`BENTOML_CONFIG_OVERRIDES`); the measured constants of the serving path are in
`credit_risk.serving.tuning`. Which models are served is resolved from these settings and the
promotion state by `credit_risk.promotion.served_tags`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Self

from bentoml.exceptions import BentoMLException
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from credit_risk.decision_store import StoreError, store_url
from credit_risk.model_store import MODEL_ENV
from credit_risk.promotion import CHALLENGER_ENV, PromotionError, ServedTags, served_tags
from credit_risk.serving.drift import DEFAULT_WINDOW as DEFAULT_DRIFT_WINDOW
from credit_risk.serving.tuning import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT
from credit_risk.serving.workarounds.model_reference import ModelNotServableError

PREFIX: Final = "CREDIT_RISK_"
"""Every setting is the environment variable PREFIX + its field name in capitals."""


class SettingsError(BentoMLException, ValueError):
    """A setting in the environment has a value the service cannot use; says which and why.

    A BentoML exception, so `bentoml serve` prints it as one line and exits 1.
    """


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return frozenset(t.strip() for t in value.split(",") if t.strip())
    return value


class Settings(BaseModel):
    """Everything the service reads from its environment, validated once at start-up."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None = Field(
        None, description="model tag to serve; a pin overrides the promotion state"
    )
    challenger: str | None = Field(
        None, description="model scored in shadow beside the champion; `none` switches it off"
    )
    batching: bool = Field(True, description="adaptive batching in the runner (and coalescing)")
    coalescing: bool = Field(True, description="one runner call per event-loop turn per worker")
    api_tokens: Annotated[frozenset[str], BeforeValidator(_comma_separated)] = Field(
        frozenset(), description="comma-separated bearer tokens for the API routes; empty: off"
    )
    api_tokens_file: Path | None = Field(
        None,
        description="a file of bearer tokens (comma- or line-separated), e.g. a mounted "
        "Secret; once set, it must exist and hold at least one token, or the server does not "
        "start",
    )
    max_in_flight: PositiveInt = Field(
        DEFAULT_MAX_IN_FLIGHT, description="requests one API worker admits before 429"
    )
    max_connections: PositiveInt = Field(
        DEFAULT_MAX_CONNECTIONS, description="open connections one API worker keeps"
    )
    drift_window: PositiveInt = Field(
        DEFAULT_DRIFT_WINDOW, description="applicants in the drift monitor's sliding window"
    )
    decision_store: str = Field(
        "",
        description="the decision store's URL: CREDIT_RISK_DECISION_STORE, or the contents of "
        "the file CREDIT_RISK_DECISION_STORE_FILE names (a mounted Secret), else SQLite under "
        "the BentoML home (credit_risk/decision_store/location.py)",
    )

    _file_tokens: frozenset[str] = PrivateAttr(frozenset())

    @model_validator(mode="after")
    def _read_tokens_file(self) -> Self:
        if self.api_tokens_file is None:
            return self
        try:
            text = self.api_tokens_file.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the tokens file: {exc.strerror or exc}") from None
        tokens = frozenset(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())
        if not tokens:
            raise ValueError("the tokens file holds no token: the API would be open")
        self._file_tokens = tokens
        return self

    def tokens(self) -> frozenset[str]:
        """Every bearer token the API routes accept (the variable's and the file's); none:
        auth is off."""
        return self.api_tokens | self._file_tokens

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings in `environ`; an unusable value raises `SettingsError` naming it."""
        given = {
            name: environ[variable(name)].strip()
            for name in cls.model_fields
            if environ.get(variable(name), "").strip()
        }
        try:
            given["decision_store"] = store_url(environ)
            return cls.model_validate(given)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None
        except StoreError as exc:
            raise SettingsError(f"invalid setting: {exc}") from None

    def served(self) -> ServedTags:
        """The models to serve: this pin and challenger, else the promotion state, else the
        newest model (credit_risk/promotion.py)."""
        environ = {MODEL_ENV: self.model or "", CHALLENGER_ENV: self.challenger or ""}
        try:  # `bentoml serve` prints a BentoML exception as one line, without a traceback
            return served_tags(environ)
        except PromotionError as exc:
            msg = f"cannot choose the model to serve: {exc} (or pin one: {MODEL_ENV}=<tag>)"
            raise ModelNotServableError(msg) from None


def variable(field: str) -> str:
    """The environment variable that sets `field`."""
    return PREFIX + field.upper()


def _one_line(exc: ValidationError) -> str:
    problems = [
        f"{variable(str(err['loc'][0]))}={err['input']!r}: {err['msg']}"
        if err["loc"]
        else f"{variable('api_tokens_file')}: {err['msg']}"
        for err in exc.errors()
    ]
    return "invalid setting: " + "; ".join(problems)
