"""Promotion and rollback through the real `credit-risk` CLI, on real models in the test store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from credit_risk import promotion
from credit_risk.cli import main
from credit_risk.model_store import MODEL_ENV, load_serving_model, store_home
from credit_risk.promotion import CHALLENGER_ENV, served_tags, state_path
from tests.conftest import copy_model

MISMATCHED_VERSION = "mismatchedschema0"


@pytest.fixture
def clean_state() -> Iterator[Path]:
    """No promotion state before or after: other tests' servers must not inherit one."""
    path = state_path()
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)
    path.with_suffix(".lock").unlink(missing_ok=True)


@pytest.fixture
def mismatched_tag(challenger_tag: str) -> Iterator[str]:
    """A stored model that claims another applicant schema (not made `latest`)."""
    target = copy_model(challenger_tag, store_home(), version=MISMATCHED_VERSION)
    info_path = target / "model.yaml"
    info = yaml.safe_load(info_path.read_text())
    info["metadata"]["schema_hash"] = "0" * 16
    info_path.write_text(yaml.safe_dump(info, sort_keys=False))
    yield f"credit_risk:{MISMATCHED_VERSION}"
    shutil.rmtree(target)


def cli(*args: str) -> Result:
    """Run `credit-risk ARGS` in process, as the console script does."""
    return CliRunner().invoke(main, list(args), env={"USER": "tester"})


def _state_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def test_promote_rollback_and_the_audit_trail(
    clean_state: Path, model_tag: str, challenger_tag: str
) -> None:
    first = cli("promote", model_tag, "--reason", "first scorecard")
    assert first.exit_code == 0, first.output
    second = cli("promote", challenger_tag, "--as", "challenger", "--reason", "seed 7")
    assert second.exit_code == 0, second.output
    state = promotion.read_state()
    assert (state.champion, state.challenger) == (model_tag, challenger_tag)

    promoted = cli("promote", challenger_tag, "--reason", "won the shadow trial")
    assert promoted.exit_code == 0, promoted.output
    state = promotion.read_state()
    assert state.champion == challenger_tag
    assert state.challenger is None, "a promoted challenger stops shadowing itself"
    assert state.previous_champions[-1] == model_tag

    rolled = cli("rollback", "--reason", "bad rate up")
    assert rolled.exit_code == 0, rolled.output
    state = promotion.read_state()
    assert state.champion == model_tag
    assert challenger_tag not in state.previous_champions

    audit = json.loads(clean_state.read_text())["audit"]
    assert [(e["action"], e["role"], e["from"], e["to"]) for e in audit][1:] == [
        ("promote", "challenger", None, challenger_tag),
        ("promote", "champion", model_tag, challenger_tag),
        ("rollback", "champion", challenger_tag, model_tag),
    ]
    assert audit[0]["to"] == model_tag
    for entry in audit:
        assert entry["who"]
        assert entry["when"].endswith("+00:00")
        assert entry["reason"]
        assert "protocol_roc_auc" in entry["figures"]
        assert entry["figures"]["schema_hash"]
    shown = cli("champion")
    assert shown.exit_code == 0
    assert f"champion:   {model_tag}" in shown.output
    assert "bad rate up" in shown.output


@pytest.mark.parametrize("case", ["unknown-tag", "schema-mismatch", "no-previous", "no-reason"])
def test_bad_input_is_one_line_exit_2_and_no_change(
    case: str, clean_state: Path, model_tag: str, mismatched_tag: str
) -> None:
    assert cli("promote", model_tag, "--reason", "start").exit_code == 0
    if case == "no-previous":
        clean_state.write_text(
            json.dumps({**json.loads(clean_state.read_text()), "previous_champions": []})
        )
    before = _state_bytes(clean_state)
    args = {
        "unknown-tag": ("promote", "credit_risk:doesnotexist", "--reason", "x"),
        "schema-mismatch": ("promote", mismatched_tag, "--reason", "x"),
        "no-previous": ("rollback", "--reason", "x"),
        "no-reason": ("promote", mismatched_tag, "--reason", "  "),
    }[case]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    expected = {
        "unknown-tag": "'credit_risk:doesnotexist' not found",
        "schema-mismatch": "was trained for applicant schema '0000000000000000'",
        "no-previous": "no previous champion",
        "no-reason": "a reason is required",
    }[case]
    assert expected in lines[0]
    assert _state_bytes(clean_state) == before


def test_resolution_order(clean_state: Path, model_tag: str, challenger_tag: str) -> None:
    assert served_tags({}).champion == "credit_risk:latest"
    assert served_tags({}).challenger is None
    assert cli("promote", challenger_tag, "--reason", "r").exit_code == 0
    assert cli("promote", model_tag, "--as", "challenger", "--reason", "r").exit_code == 0
    from_state = served_tags({})
    assert (from_state.champion, from_state.challenger) == (challenger_tag, model_tag)
    pinned = served_tags({MODEL_ENV: model_tag, CHALLENGER_ENV: "none"})
    assert (pinned.champion, pinned.challenger) == (model_tag, None)
    assert MODEL_ENV in pinned.champion_source
    named = served_tags({CHALLENGER_ENV: challenger_tag})
    assert named.challenger == challenger_tag
    retired = cli("retire-challenger", "--reason", "trial over")
    assert retired.exit_code == 0
    assert served_tags({}).challenger is None


def test_export_bundles_the_exact_tags(
    clean_state: Path, model_tag: str, challenger_tag: str, tmp_path: Path
) -> None:
    """What `make build` puts into the bento: concrete versions, never `latest`."""
    assert cli("promote", challenger_tag, "--as", "challenger", "--reason", "r").exit_code == 0
    result = CliRunner().invoke(
        main, ["champion", "--export", str(tmp_path / "bundle.json")], env={MODEL_ENV: ""}
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    newest = load_serving_model("credit_risk:latest").tag
    assert bundle == {"champion": newest, "challenger": challenger_tag}


def test_a_missing_challenger_is_refused_with_the_challengers_remedies(
    clean_state: Path, model_tag: str, tmp_path: Path
) -> None:
    """Not "set CREDIT_RISK_MODEL": that would change the champion, not the challenger."""
    missing = "credit_risk:nosuchchallenger"
    result = CliRunner().invoke(
        main,
        ["champion", "--export", str(tmp_path / "bundle.json")],
        env={MODEL_ENV: model_tag, CHALLENGER_ENV: missing},
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line
    assert f"challenger: model {missing!r} not found in the BentoML store" in line
    for remedy in (f"{CHALLENGER_ENV}=none", "credit-risk retire-challenger", "--as challenger"):
        assert remedy in line
    assert MODEL_ENV not in line
    assert not (tmp_path / "bundle.json").exists()
