"""Every measured figure the docs quote comes from a results file, and says which.

The convention (docs/performance.md, "Figures in these docs"): a sentence that links a file
under load_tests/results/ quotes that file, and so does a table right after a paragraph that
links one. Every number in such a sentence, or in such a table's cells, must be in the linked
file, as written there or rounded from a number there (to the quote's decimals, as is, as a
percentage, or in milli- or micro-units of the file's unit). Numbers in code spans, in link
targets and in fenced blocks are not quotes. The check is that the file holds the number, not
that it holds it in the same place: a changed figure is caught unless the file happens to hold
the new number elsewhere (likelier for small whole numbers than for 1,732 or 53.4).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

RESULTS = ROOT / "load_tests" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"```.*?```", flags=re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`[^`]*`")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*\[(])")
# A number as prose writes it: 1,732 or 2.1 or 16, not the digits inside p99, x4 or 1.4.40.
_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w|\.\d|,\d{3})")
_FILE_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# A quote may restate a file's number as a percentage or in milli- or micro-units.
_SCALES = (1.0, 100.0, 1e3, 1e6)


@dataclass(frozen=True)
class Quote:
    """One number a page quotes from the results files a sentence or table links."""

    page: Path
    text: str
    number: str
    sources: tuple[Path, ...]


def _results_links(text: str, page: Path, results: Path) -> tuple[Path, ...]:
    found = []
    for _, target in _LINK.findall(text):
        path = (page.parent / target.partition("#")[0]).resolve()
        if path.is_file() and path.is_relative_to(results.resolve()):
            found.append(path)
    return tuple(found)


def _numbers(text: str) -> list[str]:
    prose = _CODE.sub(" ", _LINK.sub(lambda m: m.group(1), text))
    return _NUMBER.findall(prose)


def _blocks(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def _is_table(block: str) -> bool:
    return all(line.lstrip().startswith("|") for line in block.splitlines())


def quotes(page: Path, results: Path = RESULTS) -> list[Quote]:
    """Every number the page quotes from a results file, with the files it names."""
    found: list[Quote] = []
    previous_sources: tuple[Path, ...] = ()
    for block in _blocks(page):
        if _is_table(block):
            if previous_sources:
                rows = [r for r in block.splitlines() if not re.fullmatch(r"[\s|:\-]+", r)]
                for row in rows:
                    found += [Quote(page, row, n, previous_sources) for n in _numbers(row)]
            previous_sources = ()
            continue
        previous_sources = _results_links(block, page, results)
        for sentence in _SENTENCE_END.split(re.sub(r"\s*\n\s*", " ", block)):
            sources = _results_links(sentence, page, results)
            if sources:
                found += [Quote(page, sentence, n, sources) for n in _numbers(sentence)]
    return found


def _file_values(path: Path) -> list[float]:
    text = path.read_text(encoding="utf-8")
    strings = [text]
    if path.suffix == ".json":
        values: list[float] = []

        def walk(node: object) -> None:
            if isinstance(node, bool):
                return
            if isinstance(node, int | float):
                values.append(float(node))
            elif isinstance(node, str):
                strings.append(node)
            elif isinstance(node, dict):
                for key, value in node.items():
                    strings.append(str(key))
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(text))
        strings = strings[1:]
    else:
        values = []
    for string in strings:
        values += [float(n.replace(",", "")) for n in _FILE_NUMBER.findall(string)]
    return values


def _found(number: str, values: list[float]) -> bool:
    quoted = float(number.replace(",", ""))
    decimals = len(number.partition(".")[2])
    tolerance = 0.5 * 10**-decimals
    slack = tolerance + 1e-9 * abs(quoted)
    return any(abs(value * scale - quoted) <= slack for value in values for scale in _SCALES)


def unsupported(page: Path, results: Path = RESULTS) -> list[Quote]:
    """The quotes whose number none of their named results files holds."""
    cache: dict[Path, list[float]] = {}
    missing = []
    for quote in quotes(page, results):
        values = [v for s in quote.sources for v in cache.setdefault(s, _file_values(s))]
        if not _found(quote.number, values):
            missing.append(quote)
    return missing


def test_every_quoted_figure_is_in_the_results_file_it_names() -> None:
    wrong = [
        f"{q.page.relative_to(ROOT)}: {q.number} is in none of "
        f"{[s.relative_to(ROOT).as_posix() for s in q.sources]}: {q.text[:160]!r}"
        for page in PAGES
        for q in unsupported(page)
    ]
    assert wrong == []


def test_the_docs_quote_their_figures_from_the_results_files() -> None:
    """The performance, portfolio and model pages quote measurements, so the check has work."""
    by_page = {p.name: quotes(p) for p in PAGES}
    for name in ("performance.md", "portfolio.md", "model.md", "champion-challenger.md"):
        assert len(by_page[name]) >= 10, f"docs/{name} quotes {len(by_page[name])} figures"
    quoted = {s for qs in by_page.values() for q in qs for s in q.sources}
    for results_file in ("benchmark.md", "startup.md", "portfolio-bench.md"):
        assert RESULTS / results_file in quoted, results_file


def test_a_figure_missing_from_its_results_file_is_found(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "run.json").write_text(
        json.dumps({"requests_per_s": 1732.4, "p99_s": 0.0534, "ratio": "3.75 x"}),
        encoding="utf-8",
    )
    page = tmp_path / "page.md"
    page.write_text(
        "Ours answered 1,732 requests/s, p99 53.4 ms, 3.75 times Flask"
        " ([run](results/run.json)). It answered 1,999 requests/s once ([run](results/run.json)).\n"
        "A sentence without a link may say 7,777 (it quotes nothing).\n\n"
        "At 64 connections ([run](results/run.json)):\n\n"
        "| what | figure |\n| --- | ---: |\n| requests/s | 1,732 |\n| p99 ms | 54 |\n\n"
        "```\n8,888 in a code block ([run](results/run.json))\n```\n"
        "`9,999` in a code span ([run](results/run.json)).\n",
        encoding="utf-8",
    )
    assert sorted(q.number for q in unsupported(page, results)) == ["1,999", "54", "64"]
    assert {q.number for q in quotes(page, results)} >= {"1,732", "53.4", "3.75", "1,999"}
