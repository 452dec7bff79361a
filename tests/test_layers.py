"""Imports point downward only: a test that reads the layer table of docs/architecture.md.

The table (between the ``layers:begin`` and ``layers:end`` markers) names each layer's folders and
modules of ``src/loist``; this test takes its sets from there, checks every folder and module on
disk stands in exactly one row and every row names something that exists, so the document and the
code cannot drift. Entry points may use the blob store's plain types (``loist.storage.base``) but
never an engine's behaviour: no SQL, no blob I/O.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "loist"
DOC = ROOT / "docs" / "architecture.md"
ORDER = ("entry points", "services", "engines", "foundation")  # top to bottom


def layer_table() -> dict[str, set[str]]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- layers:begin -->", 1)[1].split("<!-- layers:end -->", 1)[0]
    layers: dict[str, set[str]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ORDER:
            layers[cells[0]] = {re.sub(r"(/|\.py)$", "", u) for u in re.findall(r"`([^`]+)`", cells[1])}
    assert tuple(layers) == ORDER, f"docs/architecture.md layer table rows: {list(layers)}"
    return layers


LAYERS = layer_table()
FILES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def unit_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def layer_of(unit: str) -> str:
    found = [name for name, units in LAYERS.items() if unit in units]
    assert len(found) == 1, f"{unit} is in {found or 'no layer'}: name it once in docs/architecture.md's layer table"
    return found[0]


def loist_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loist"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("loist"))
    return found


def allowed(unit: str, module: str) -> bool:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__version__":  # `from loist import __version__`
        return True
    target = parts[1]
    here, there = layer_of(unit), layer_of(target)
    if target == unit or there == "foundation":
        return True
    if here == "entry points" and there == "engines":
        return module.startswith("loist.storage.base")
    if here == "engines":
        return False  # an engine never imports another engine
    return ORDER.index(there) >= ORDER.index(here)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path: Path) -> None:
    unit = unit_of(path)
    bad = sorted(m for m in loist_imports(path) if not allowed(unit, m))
    assert not bad, f"{path.relative_to(SRC)} ({unit}, {layer_of(unit)}) imports {bad}"


def test_the_table_and_the_folders_agree() -> None:
    on_disk = {unit_of(p) for p in FILES}
    in_table = set().union(*LAYERS.values())
    assert on_disk == in_table, {"not in the table": on_disk - in_table, "not on disk": in_table - on_disk}
    for unit in on_disk:
        layer_of(unit)  # exactly one row each


def test_the_rule_refuses_upward_and_sideways_imports() -> None:
    assert not allowed("library", "loist.cli.app")
    assert not allowed("catalog", "loist.storage.base")
    assert not allowed("config", "loist.library.service")
    assert not allowed("web", "loist.catalog.store")
    assert allowed("web", "loist.storage.base")
    assert allowed("cli", "loist.library.service")
