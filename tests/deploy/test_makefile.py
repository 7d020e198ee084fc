"""The Makefile's container-engine set-up (`WITH_ENGINE`), run by make itself.

A relative CONTAINER_ENV must hold in whatever directory a recipe runs (`make containerize` runs
BentoML from the temporary directory), and one that is not there must stop the target instead
of falling through to a docker CLI without BuildKit. A stand-in for the provisioning script
prints the same kind of `export PATH=...` line; no engine is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def _stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """A container-env.sh whose `env` puts a marker directory first on PATH."""
    marker = tmp_path / "engine-bin"
    script = tmp_path / "shared" / "tools" / "container-env.sh"
    script.parent.mkdir(parents=True)
    script.write_text(f'[ "$1" = env ] && echo "export PATH={marker}:\\$PATH"\n')
    return script, marker


def _engine_path(
    recipe_dir: Path, *args: str, env: dict[str, str] | None = None, makefile_dir: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """PATH as a recipe sees it after `cd recipe_dir` and the Makefile's WITH_ENGINE."""
    probe = f'engine-probe: ; @cd "{recipe_dir}" && $(WITH_ENGINE) printf %s "$$PATH"'
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CONTAINER_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-s", "-C", str(makefile_dir), f"--eval={probe}", "engine-probe", *args],
        cwd=recipe_dir,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_relative_container_env_holds_in_any_recipe_directory(tmp_path: Path) -> None:
    script, marker = _stand_in(tmp_path)
    relative = os.path.relpath(script, ROOT)  # from the repository root, as documented
    elsewhere = tmp_path / "deep" / "er"
    elsewhere.mkdir(parents=True)
    assert not (elsewhere / relative).exists()
    for given in ([f"CONTAINER_ENV={relative}"], []):
        env = {} if given else {"CONTAINER_ENV": relative}
        run = _engine_path(elsewhere, *given, env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split(":")[0] == str(marker), (given, run.stdout[:200])


def test_a_container_env_that_is_not_there_stops_the_target(tmp_path: Path) -> None:
    run = _engine_path(tmp_path, "CONTAINER_ENV=missing/container-env.sh")
    assert run.returncode != 0
    assert "CONTAINER_ENV=missing/container-env.sh: no such file" in run.stderr
    assert str(ROOT / "missing" / "container-env.sh") in run.stderr


def test_without_the_default_script_the_docker_on_path_is_used_with_a_note(tmp_path: Path) -> None:
    clone = tmp_path / "clone"  # a clone with no shared/ beside it
    clone.mkdir()
    shutil.copy(ROOT / "Makefile", clone / "Makefile")
    run = _engine_path(tmp_path, makefile_dir=clone)
    assert run.returncode == 0, run.stderr
    assert run.stdout == os.environ["PATH"]
    assert f"note: no {tmp_path / 'shared' / 'tools' / 'container-env.sh'}" in run.stderr
    assert "set CONTAINER_ENV" in run.stderr
