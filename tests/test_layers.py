"""Imports point downward only (docs/architecture.md): a test, so the layering cannot erode.

entry points (cli, serve, mcp/, web/, ops/) -> services (library/) -> engines (ingest/, catalog/, storage/; none imports another) -> foundation (config,
errors, model, logs). Entry points may use the blob store's plain types (``loist.storage.base``) but never
an engine's behaviour: no SQL, no blob I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "loist"

FOUNDATION = {"config", "errors", "model", "logs", "__init__", "__version__"}
ENGINES = {"ingest", "catalog", "storage"}
SERVICES = {"library"}
ENTRY = {"cli", "serve", "mcp", "web", "ops", "__main__"}


def unit_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


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
    if len(parts) == 1:  # `from loist import __version__`
        return True
    target = parts[1]
    if target == unit or target in FOUNDATION:
        return True
    if unit in FOUNDATION:
        return False
    if unit in ENGINES:
        return False  # an engine never imports another engine or anything above
    if unit in SERVICES:
        return target in ENGINES or target in SERVICES
    if unit in ENTRY:
        if target in ENGINES:
            return module.startswith("loist.storage.base")
        return True
    raise AssertionError(f"{unit} is in no layer: add it to tests/test_layers.py and docs/architecture.md")


FILES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path: Path) -> None:
    unit = unit_of(path)
    bad = sorted(m for m in loist_imports(path) if not allowed(unit, m))
    assert not bad, f"{path.relative_to(SRC)} ({unit}) imports {bad}"


def test_every_unit_is_in_a_layer() -> None:
    units = {unit_of(p) for p in FILES}
    assert units <= FOUNDATION | ENGINES | SERVICES | ENTRY, units - (FOUNDATION | ENGINES | SERVICES | ENTRY)
