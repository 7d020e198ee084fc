"""The package layout is the architecture: the shared contract at the top, training and serving
beside it, and imports that only point one way.

Read from the source (module-level imports, `TYPE_CHECKING` blocks included; imports inside
functions are the deliberate lazy ones of the command line and are not edges here).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "credit_risk"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    nodes: list[ast.stmt] = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and the like
            nodes.extend(node.body + node.orelse)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Edges between credit_risk modules."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = _top_level_imports(ast.parse(path.read_text()))
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _part(module: str) -> str:
    """The sub-package a module belongs to; the top-level modules are the shared contract."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and (PACKAGE / parts[1]).is_dir() else "contract"


def test_imports_point_one_way() -> None:
    """Training, serving and the batch jobs build on the contract; none imports another, and the
    contract imports none of them."""
    wrong = [
        f"{src} -> {dst}"
        for src, targets in import_graph().items()
        for dst in targets
        if _part(dst) != "contract"
        and _part(src) != _part(dst)
        and not dst.startswith(f"{src}.")  # a package re-exporting its own modules
    ]
    assert wrong == []


def test_the_three_parts_exist() -> None:
    parts = {_part(m) for m in import_graph()}
    assert {"contract", "training", "serving"} <= parts
