"""The README stays a front page, and every relative link in the docs leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from credit_risk.backtest.inputs import OUTCOME_COLUMNS
from tests.conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = ROOT / "credit_risk"
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


def test_no_page_refers_to_a_commit() -> None:
    """History lives in CHANGELOG.md, told by theme: no page points the reader at a commit."""
    commit = re.compile(r"`[0-9a-f]{7,12}`|\bcommits? [0-9a-f]{7,40}\b|\bcommit `")
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        found = [m.group(0) for m in commit.finditer(text) if re.search(r"\d", m.group(0))]
        assert not found, f"{page.relative_to(ROOT)} refers to commits: {found}"


def tree_entries(text: str) -> dict[str, set[str]]:
    """The README's layout block: each directory it lists, with the names listed under it."""
    blocks = re.findall(r"```text\n(.*?)```", text, re.DOTALL)
    block = next(b for b in blocks if b.startswith("credit_risk/"))
    listed: dict[str, set[str]] = {"": set()}
    parents: list[tuple[int, str]] = []
    for line in block.splitlines():
        entry = re.match(r"^( *)(\S.*?)(?: {2,}|$)", line)
        if entry is None or not line.strip() or line.startswith(" " * 12):
            continue  # a continued description
        indent = len(entry.group(1))
        parents = [(i, p) for i, p in parents if i < indent]
        parent = parents[-1][1] if parents else ""
        for name in entry.group(2).split(", "):
            listed.setdefault(parent, set()).add(name)
            if name.endswith("/"):
                parents.append((indent, parent + name))
                listed.setdefault(parent + name, set())
    return listed


def _package_entries(directory: Path) -> set[str]:
    modules = {p.name for p in directory.glob("*.py") if p.name != "__init__.py"}
    return modules | {f"{p.name}/" for p in directory.iterdir() if (p / "__init__.py").is_file()}


def layout_problems(text: str, root: Path) -> list[str]:
    """Where the tree in `text` and the files under `root` disagree."""
    listed = tree_entries(text)
    problems = [
        f"{directory}{name} is listed but missing"
        for directory, names in listed.items()
        for name in sorted(names)
        if not (root / directory / name).exists()
    ]
    package = root / "credit_risk"
    for directory in [package, *sorted(p.parent for p in package.rglob("*/__init__.py"))]:
        key = directory.relative_to(root).as_posix() + "/"
        entries = _package_entries(directory)  # the package's modules; a part's sub-packages
        if directory != package:
            entries = {e for e in entries if e.endswith("/")}
        unlisted = entries - listed.get(key, set())
        problems += [f"{key}{name} is not listed" for name in sorted(unlisted)]
    return problems


def test_the_readme_tree_is_the_layout() -> None:
    """Every module and sub-package of credit_risk/ (and the sub-packages of those) is in the
    README's tree, everything the tree names exists, and it lists the top-level directories
    beside the package."""
    text = README.read_text(encoding="utf-8")
    assert layout_problems(text, ROOT) == []
    assert {"credit_risk/", "load_tests/", "deploy/", "tests/"} <= tree_entries(text)[""]


def test_the_tree_check_finds_a_missing_and_an_unlisted_entry(tmp_path: Path) -> None:
    for path in ("credit_risk/__init__.py", "credit_risk/schema.py", "credit_risk/new/__init__.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("", encoding="utf-8")
    tree = (
        "```text\ncredit_risk/   the package\n  schema.py, gone.py   the contract\n"
        "                          a description, continued\n  old/   a part\n"
        "    mod.py   in it\n```\n"
    )
    assert layout_problems(tree, tmp_path) == [
        "credit_risk/gone.py is listed but missing",
        "credit_risk/old/ is listed but missing",
        "credit_risk/old/mod.py is listed but missing",
        "credit_risk/new/ is not listed",
    ]


def test_the_design_notes_name_every_sub_package() -> None:
    """docs/design.md's layout names each part of credit_risk/, and names none that is gone."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`credit_risk/([\w/]+?)/?`", text))
    packages = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*/__init__.py")}
    assert packages <= named, f"docs/design.md does not name {sorted(packages - named)}"
    for path in named:
        assert (PACKAGE / path).exists() or (PACKAGE / f"{path}.py").exists(), path
