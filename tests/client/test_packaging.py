"""The client ships in the package's wheel, marked as typed (PEP 561), for other projects."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

UV = ROOT / ".venv" / "bin" / "uv"


def test_the_wheel_carries_the_client_and_its_type_marker(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.skip(f"{UV} missing: `make setup` installs it")
    source = tmp_path / "source"  # a copy: the build leaves a build/ folder in its source
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "credit_risk", source / "credit_risk", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [str(UV), "build", "--wheel", "-q", "-o", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("credit_risk_bento-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "credit_risk/py.typed" in names, "without it, mypy ignores the installed types"
    client = {p.relative_to(ROOT).as_posix() for p in (ROOT / "credit_risk/client").glob("*.py")}
    assert client <= names
