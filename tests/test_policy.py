"""The docs show the credit policy exactly as `credit_risk.policy` states it."""

from __future__ import annotations

import re

from click.testing import CliRunner

from credit_risk.cli import main
from credit_risk.policy import BAND_FLOORS, MAX_REASON_CODES, REASONS, markdown_tables
from tests.conftest import ROOT

MODEL_DOC = ROOT / "docs" / "model.md"
BLOCK = re.compile(r"<!-- policy:start -->\n(.*?)<!-- policy:end -->", re.DOTALL)


def _documented_policy() -> str:
    blocks = BLOCK.findall(MODEL_DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 1, "docs/model.md holds exactly one policy block"
    return str(blocks[0])


def test_the_policy_block_in_the_docs_is_the_policy() -> None:
    assert _documented_policy() == markdown_tables(), (
        "docs/model.md is out of date: replace its policy block with `credit-risk policy`"
    )


def test_the_tables_name_every_band_and_reason() -> None:
    tables = markdown_tables()
    for band in BAND_FLOORS:
        assert f"\n| {band} | " in tables
    for field, (code, text) in REASONS.items():
        assert f"| {code} | `{field}` | {text} |" in tables
    assert f"at most {MAX_REASON_CODES}" in tables


def test_credit_risk_policy_prints_the_tables() -> None:
    result = CliRunner().invoke(main, ["policy"])
    assert result.exit_code == 0
    assert result.output == markdown_tables()
