"""The workarounds refuse a BentoML release they were not measured on."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from credit_risk.serving.workarounds import MEASURED_ON, UnmeasuredBentoMLError, check_bentoml
from tests.conftest import ROOT


def test_the_installed_bentoml_is_the_measured_one() -> None:
    assert version("bentoml") == MEASURED_ON


def test_pyproject_pins_exactly_the_measured_release() -> None:
    assert f'"bentoml=={MEASURED_ON}"' in (ROOT / "pyproject.toml").read_text()


def test_another_release_is_refused_with_the_measured_version_named() -> None:
    with pytest.raises(UnmeasuredBentoMLError, match=f"measured on bentoml {MEASURED_ON}"):
        check_bentoml("1.4.41")
