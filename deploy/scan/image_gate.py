"""The image gate: fail the build on a fixable HIGH or CRITICAL vulnerability in the new image.

Reads, on standard input, what ``gcloud artifacts docker images list-vulnerabilities SCAN
--format=json`` prints for the On-Demand Scanning result of the image just built (a JSON list of
occurrences), and exits 1 when any occurrence is HIGH or CRITICAL (its effective severity) and has a
fix available: a newer base image or package would remove it, so shipping it is a choice nobody
made. Unfixable findings are listed but do not fail the build (Artifact Registry's continuous
scanning keeps reporting them; docs/security.md says how to respond). ``ALLOWED`` ids (arguments,
e.g. ``CVE-2024-1234``) are accepted risks, each with a reason in docs/security.md.

Standard library only: it runs in the Cloud SDK image of the pipeline step.
"""

from __future__ import annotations

import json
import sys
from typing import Any

BLOCKING = frozenset({"HIGH", "CRITICAL"})


def findings(occurrences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per vulnerability occurrence: id, severity, fixable, packages."""
    rows = []
    for occurrence in occurrences:
        vuln = occurrence.get("vulnerability") or {}
        issues = vuln.get("packageIssue") or []
        rows.append({
            "id": (occurrence.get("noteName") or "").rsplit("/", 1)[-1] or vuln.get("shortDescription", "?"),
            "severity": str(vuln.get("effectiveSeverity") or vuln.get("severity") or "UNKNOWN").upper(),
            "fixable": bool(vuln.get("fixAvailable")),
            "packages": sorted({str(i.get("affectedPackage", "?")) for i in issues}),
        })
    return rows


def blocking(rows: list[dict[str, Any]], allowed: set[str]) -> list[dict[str, Any]]:
    return [r for r in rows if r["severity"] in BLOCKING and r["fixable"] and r["id"] not in allowed]


def main(argv: list[str]) -> int:
    data = json.load(sys.stdin)
    rows = findings(data if isinstance(data, list) else [])
    allowed = set(argv)
    stopped = blocking(rows, allowed)
    print(f"image scan: {len(rows)} findings, {len(stopped)} fixable HIGH/CRITICAL not allowed")
    for row in sorted(rows, key=lambda r: (r["id"] not in {s['id'] for s in stopped}, r["severity"], r["id"])):
        mark = "BLOCKS" if row in stopped else "      "
        print(f"  {mark} {row['severity']:<9} {'fix' if row['fixable'] else 'no fix':<6} {row['id']} {' '.join(row['packages'])}")
    return 1 if stopped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
