"""The Python examples of docs/api.md ("From Python") run as written against a real server."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, Server

pytestmark = pytest.mark.integration

DOCUMENTED_URL = "http://127.0.0.1:3000"


def _examples() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("## From Python") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_docs_show_both_clients() -> None:
    examples = _examples()
    assert any("CreditRiskClient" in e for e in examples)
    assert any("bentoml.SyncHTTPClient" in e for e in examples)


@pytest.mark.parametrize("index", range(2))
def test_each_example_runs(server: Server, index: int) -> None:
    example = _examples()[index]
    assert DOCUMENTED_URL in example
    exec(example.replace(DOCUMENTED_URL, server.url), {})
