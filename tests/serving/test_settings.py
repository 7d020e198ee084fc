"""The service's settings: defaults with no configuration, one line naming a bad variable."""

from __future__ import annotations

import pytest

from credit_risk.promotion import CHALLENGER_ENV
from credit_risk.serving.drift import DEFAULT_WINDOW
from credit_risk.serving.settings import Settings, SettingsError
from credit_risk.serving.tuning import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT


def test_no_configuration_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.model is None
    assert settings.challenger is None
    assert settings.batching
    assert settings.coalescing
    assert settings.api_tokens == frozenset()
    assert settings.max_in_flight == DEFAULT_MAX_IN_FLIGHT
    assert settings.max_connections == DEFAULT_MAX_CONNECTIONS
    assert settings.drift_window == DEFAULT_WINDOW


def test_every_field_is_read_from_its_variable() -> None:
    settings = Settings.from_env(
        {
            "CREDIT_RISK_MODEL": " credit_risk:abc ",
            "CREDIT_RISK_BATCHING": "off",
            "CREDIT_RISK_COALESCING": "0",
            "CREDIT_RISK_API_TOKENS": " one, two ,,three ",
            "CREDIT_RISK_MAX_IN_FLIGHT": "8",
            "CREDIT_RISK_MAX_CONNECTIONS": "250",
            "CREDIT_RISK_DRIFT_WINDOW": "50",
            "UNRELATED": "ignored",
        }
    )
    assert settings.model == "credit_risk:abc"
    assert not settings.batching
    assert not settings.coalescing
    assert settings.api_tokens == frozenset({"one", "two", "three"})
    assert (settings.max_in_flight, settings.max_connections, settings.drift_window) == (8, 250, 50)


def test_a_blank_variable_counts_as_unset() -> None:
    assert Settings.from_env({"CREDIT_RISK_MAX_IN_FLIGHT": "  "}).max_in_flight == (
        DEFAULT_MAX_IN_FLIGHT
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CREDIT_RISK_MAX_IN_FLIGHT", "0"),
        ("CREDIT_RISK_MAX_CONNECTIONS", "-5"),
        ("CREDIT_RISK_DRIFT_WINDOW", "many"),
        ("CREDIT_RISK_BATCHING", "perhaps"),
    ],
)
def test_an_unusable_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert "\n" not in message
    assert f"{variable}={value!r}" in message


def test_the_served_models_follow_the_pin_and_the_challenger_switch() -> None:
    served = Settings.from_env(
        {"CREDIT_RISK_MODEL": "credit_risk:pinned", CHALLENGER_ENV: "none"}
    ).served()
    assert served.champion == "credit_risk:pinned"
    assert served.champion_source.startswith("pinned")
    assert served.challenger is None


def test_tokens_come_from_the_variable_and_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "tokens"
    secret.write_text("from-file-1\nfrom-file-2,\n")
    settings = Settings.from_env(
        {"CREDIT_RISK_API_TOKENS": "from-env", "CREDIT_RISK_API_TOKENS_FILE": str(secret)}
    )
    assert settings.tokens() == frozenset({"from-env", "from-file-1", "from-file-2"})
    assert Settings.from_env({}).tokens() == frozenset(), "auth off without either"


@pytest.mark.parametrize(("content", "says"), [(None, "cannot read"), (" \n,\n", "no token")])
def test_a_tokens_file_that_is_missing_or_empty_stops_the_server(  # type: ignore[no-untyped-def]
    tmp_path, content: str | None, says: str
) -> None:
    secret = tmp_path / "tokens"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"CREDIT_RISK_API_TOKENS_FILE": str(secret)})
    message = str(refused.value)
    assert message.startswith("invalid setting: CREDIT_RISK_API_TOKENS_FILE")
    assert says in message
    assert "\n" not in message
