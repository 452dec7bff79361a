"""Limits the code holds (docs/architecture.md, "Limits"): a module holds one idea, a function one step.

- no module under ``src/loist`` over ``MAX_MODULE_LINES`` lines (migration snapshots excepted: they
  are history, written once);
- no function or method over ``MAX_FUNCTION_LINES`` lines of its own, decorators and docstring
  included (a function defined inside another counts alone, not as part of its host);
- no import cycle between modules, counting imports inside functions (a cycle that only loads
  because one side imports late is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "loist"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

FILES = sorted(p for p in PACKAGE.rglob("*.py") if "versions" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in FILES}


def _target(name: str) -> str | None:
    """The most specific module of ours that an imported dotted name lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path) -> set[str]:
    """Modules of ours this file imports, at any depth in the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found.update(t for n in names if n.startswith("loist") and (t := _target(n)))
    found.discard(module_name(path))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _span(node: ast.AST) -> int:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])  # type: ignore[attr-defined]
    return (node.end_lineno or node.lineno) - first + 1  # type: ignore[attr-defined]


def own_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines less those of the functions and classes defined inside it (each counted alone)."""
    nested = [n for n in ast.walk(node) if n is not node and isinstance(n, _DEFS)]
    outermost = [n for n in nested if not any(o is not n and _contains(o, n) for o in nested)]
    return _span(node) - sum(_span(n) for n in outermost)


def _contains(outer: ast.AST, inner: ast.AST) -> bool:
    return any(n is inner for n in ast.walk(outer))


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{node.name} ({own_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and own_lines(node) > MAX_FUNCTION_LINES
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_functions_are_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"
    assert not long_functions(path), f"{path.relative_to(PACKAGE)}: {long_functions(path)}"


def test_no_import_cycles() -> None:
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
