"""docs/observability.md names every metric family the app emits, as the exposition spells it."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loist.telemetry import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def test_every_loist_family_is_documented() -> None:
    metrics.enable()
    text = generate_latest(REGISTRY).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("loist_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert len(names) >= 12
    doc = DOC.read_text()
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"families missing from docs/observability.md: {missing}"
