"""Promotion and rollback through the real `credit-risk` CLI, on real models in a store of each
test's own."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from credit_risk import promotion
from credit_risk.cli import main
from credit_risk.model_store import MODEL_ENV, load_serving_model, store_home
from credit_risk.promotion import CHALLENGER_ENV, served_tags, state_path
from tests.conftest import copy_model, store_at

MISMATCHED_VERSION = "mismatchedschema0"


@pytest.fixture
def clean_state(model_tag: str, challenger_tag: str, tmp_path: Path) -> Iterator[Path]:
    """A store of the test's own with both models (the first `latest`) and no promotion state:
    what the test promotes never reaches the session store or another test's servers."""
    with store_at(tmp_path / "bentoml", model_tag, challenger_tag):
        path = state_path()
        assert not path.exists()
        yield path


@pytest.fixture
def mismatched_tag(clean_state: Path, challenger_tag: str) -> str:
    """A stored model that claims another applicant schema (not made `latest`)."""
    target = copy_model(challenger_tag, store_home(), version=MISMATCHED_VERSION)
    info_path = target / "model.yaml"
    info = yaml.safe_load(info_path.read_text())
    info["metadata"]["schema_hash"] = "0" * 16
    info_path.write_text(yaml.safe_dump(info, sort_keys=False))
    return f"credit_risk:{MISMATCHED_VERSION}"


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
        ("promote", "challenger", challenger_tag, None),  # it stopped shadowing itself
        ("rollback", "champion", challenger_tag, model_tag),
    ]
    assert audit[0]["to"] == model_tag
    for entry in audit:
        assert entry["who"]
        assert entry["when"].endswith("+00:00")
        assert entry["reason"]
        if entry["to"]:
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


THIRD_VERSION = "thirdscorecard0"


@pytest.fixture
def third_tag(challenger_tag: str) -> Iterator[str]:
    """A third servable model (a copy of the challenger under another version)."""
    target = copy_model(challenger_tag, store_home(), version=THIRD_VERSION)
    yield f"credit_risk:{THIRD_VERSION}"
    shutil.rmtree(target)


def _replayed(audit: list[dict[str, Any]]) -> dict[str, str | None]:
    """Both slots as the audit trail alone tells them; each entry starts where the last of its
    slot ended (the first champion entry names the newest model, which served unpromoted)."""
    slots: dict[str, str | None] = {"champion": None, "challenger": None}
    for entry in audit:
        if slots[entry["role"]] is not None:
            assert entry["from"] == slots[entry["role"]], entry
        slots[entry["role"]] = entry["to"]
    return slots


def test_every_change_of_either_slot_has_an_audit_entry(
    clean_state: Path, model_tag: str, challenger_tag: str, third_tag: str
) -> None:
    a, b, c = model_tag, challenger_tag, third_tag  # a is the newest: it serves unpromoted
    steps: list[tuple[tuple[str, ...], list[tuple[str, str | None, str | None]]]] = [
        (("promote", b, "--as", "challenger"), [("challenger", None, b)]),
        (("promote", c), [("champion", a, c)]),
        (("promote", a, "--as", "challenger"), [("challenger", b, a)]),
        # a rollback to the model that is challenger empties the challenger slot too
        (("rollback",), [("champion", c, a), ("challenger", a, None)]),
        (("promote", b, "--as", "challenger"), [("challenger", None, b)]),
        # a challenger promoted to champion stops shadowing itself
        (("promote", b), [("champion", a, b), ("challenger", b, None)]),
        (("promote", c, "--as", "challenger"), [("challenger", None, c)]),
        (("retire-challenger",), [("challenger", c, None)]),
        (("rollback",), [("champion", b, a)]),
    ]
    seen = 0
    for args, expected in steps:
        result = cli(*args, "--reason", f"step {args[0]}")
        assert result.exit_code == 0, result.output
        assert len(result.output.strip().splitlines()) == len(expected), result.output
        data = json.loads(clean_state.read_text())
        new = data["audit"][seen:]
        seen = len(data["audit"])
        assert [(e["role"], e["from"], e["to"]) for e in new] == expected, args
        assert {(e["action"], e["reason"], e["when"]) for e in new} == {
            (new[0]["action"], f"step {args[0]}", new[0]["when"])
        }
        assert _replayed(data["audit"]) == {
            "champion": data["champion"],
            "challenger": data["challenger"],
        }, args
    assert (data["champion"], data["challenger"], data["previous_champions"]) == (a, None, [])


DAMAGED = {
    "truncated": '{"champion": "credit_risk:abc", "chall',
    "a list": "[]",
    "empty": "",
    "champion not a tag": '{"champion": 5}',
    "unknown key": '{"champion": null, "champoin": "credit_risk:abc"}',
    "audit entry short of fields": '{"audit": [{"when": "2026-12-01T10:00:00+00:00"}]}',
}
"""State files that must be refused, and what the one line says is wrong."""
PROBLEM = {
    "truncated": "not valid JSON (EOF while parsing",
    "a list": "top level: Input should be an object",
    "empty": "not valid JSON",
    "champion not a tag": "champion: Input should be a valid string (found 5)",
    "unknown key": "champoin: Extra inputs are not permitted",
    "audit entry short of fields": "audit.0.who: Field required",
}


@pytest.mark.parametrize("case", [*DAMAGED, "a directory"])
def test_a_damaged_state_is_one_line_and_exit_2_for_every_command(
    case: str, clean_state: Path, model_tag: str, tmp_path: Path
) -> None:
    if case == "a directory":
        clean_state.mkdir()
        problem = "cannot read the promotion state (Is a directory)"
    else:
        clean_state.write_text(DAMAGED[case])
        problem = PROBLEM[case]
    before = _state_bytes(clean_state) if clean_state.is_file() else None
    book = tmp_path / "book.csv"
    book.write_text("")  # never opened: the state is read first
    commands = [
        ("champion",),
        ("champion", "--json"),
        ("champion", "--export", str(tmp_path / "bundle.json")),
        ("promote", model_tag, "--reason", "r"),
        ("promote", model_tag, "--as", "challenger", "--reason", "r"),
        ("rollback", "--reason", "r"),
        ("retire-challenger", "--reason", "r"),
        ("score", str(book), str(tmp_path / "out.parquet")),
    ]
    try:
        for args in commands:
            result = CliRunner().invoke(main, list(args), env={MODEL_ENV: ""})
            assert result.exit_code == 2, (args, result.output)
            lines = result.output.strip().splitlines()
            assert len(lines) == 1, (args, result.output)
            assert lines[0].startswith(f"Error: {clean_state}: "), lines[0]
            assert problem in lines[0], lines[0]
            assert "Traceback" not in result.output
        assert not (tmp_path / "bundle.json").exists()
        if before is not None:
            assert _state_bytes(clean_state) == before
    finally:
        if clean_state.is_dir():
            clean_state.rmdir()


@pytest.mark.parametrize("case", [*DAMAGED, "audit entry without figures"])
def test_a_pinned_champion_is_served_whatever_the_state_holds(
    case: str, clean_state: Path, model_tag: str
) -> None:
    if case in DAMAGED:
        clean_state.write_text(DAMAGED[case])
        with pytest.raises(promotion.PromotionStateError, match=re.escape(PROBLEM[case])):
            served_tags({})
    else:
        entry = {"when": "2026-12-01T10:00:00+00:00", "who": "a", "action": "promote"}
        entry |= {"role": "challenger", "from": None, "to": model_tag, "reason": "r"}
        clean_state.write_text(json.dumps({"challenger": model_tag, "audit": [entry]}))
    pinned = served_tags({MODEL_ENV: model_tag})
    assert (pinned.champion, pinned.champion_source) == (model_tag, f"pinned by {MODEL_ENV}")
    if case in DAMAGED:
        assert pinned.challenger is None
        assert pinned.challenger_source == "promotion state unreadable"
        assert len(pinned.notes) == 1
        assert str(clean_state) in pinned.notes[0]
        assert PROBLEM[case] in pinned.notes[0]
    else:  # a valid state without figures: nothing to warn about
        assert (pinned.challenger, pinned.notes) == (model_tag, ())
        shown = cli("champion")
        assert shown.exit_code == 0, shown.output
        assert "(protocol ROC AUC -): r" in shown.output


def test_a_state_written_by_hand_with_extra_whitespace_is_still_read(clean_state: Path) -> None:
    """The schema forbids unknown keys, not formatting: an indented file is the same state."""
    clean_state.write_text('\n  {\n "champion" : null ,\n "audit": [ ]\n }\n')
    assert promotion.read_state() == promotion.PromotionState()
