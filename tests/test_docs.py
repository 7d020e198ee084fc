"""The README stays a front page, and every relative link in the docs leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from credit_risk.backtest.inputs import OUTCOME_COLUMNS
from tests.conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 260
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
EXTERNAL = ("http://", "https://", "mailto:")


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not t.startswith(EXTERNAL)]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: move detail to docs/"


def _broken_links(page: Path) -> list[str]:
    broken = []
    for link in _relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        exists = target.is_file()
        if not exists or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
            broken.append(link)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading, here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-here) [gone](missing.md#x) [no heading](other.md#nope)\n"
        '<img src="missing.png"> [web](https://example.com/x)\n'
        "```\n[in code](ignored.md)\n```\n",
        encoding="utf-8",
    )
    assert _broken_links(page) == ["missing.md#x", "other.md#nope", "missing.png"]


def test_the_readme_links_the_documentation() -> None:
    linked = {(README.parent / link).resolve() for link in _relative_links(README)}
    pages = ("model", "api", "operations", "deployment", "reliability", "performance", "design")
    for page in pages:
        assert (ROOT / "docs" / f"{page}.md").resolve() in linked, page


def test_every_description_of_the_outcomes_file_names_the_columns_backtest_reads() -> None:
    """A paragraph that describes an outcomes file by its columns names all of them."""
    mentions_file = re.compile(r"outcomes(\.csv|\.parquet| file)|\bOUTCOMES\b")
    described = 0
    for page in [*PAGES, ROOT / "Makefile", ROOT / "credit_risk" / "cli.py"]:
        for paragraph in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
            if mentions_file.search(paragraph) and "decision_id" in paragraph:
                described += 1
                missing = [c for c in OUTCOME_COLUMNS if not re.search(rf"\b{c}\b", paragraph)]
                assert not missing, f"{page.relative_to(ROOT)} omits {missing}: {paragraph!r}"
    assert described >= 3
