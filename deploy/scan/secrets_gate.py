"""The secret gate: fail when ``detect-secrets scan`` finds a secret the baseline does not list.

Reads the scan's JSON on standard input; ``.secrets.baseline`` (in the current folder) lists the
reviewed findings (placeholders, test fixtures, secret *names*), each by file and hash. Anything
else is a new finding: exit 1, naming file and line. Standard library only.
"""

from __future__ import annotations

import json
import sys


def new_findings(found: dict[str, list[dict[str, object]]], baseline: dict[str, list[dict[str, object]]]) -> list[str]:
    known = {(name, item["hashed_secret"]) for name, items in baseline.items() for item in items}
    return [
        f"{item['type']} in {name}:{item['line_number']}"
        for name, items in sorted(found.items())
        for item in items
        if (name, item["hashed_secret"]) not in known
    ]


def main() -> int:
    found = json.load(sys.stdin)["results"]
    with open(".secrets.baseline", encoding="utf-8") as handle:
        baseline = json.load(handle)["results"]
    new = new_findings(found, baseline)
    for line in new:
        print(f"secret scan: {line} (not in .secrets.baseline)")
    if new:
        print("A real secret: remove it and rotate it (docs/security.md). A false positive: mark the line "
              "'# pragma: allowlist secret' or add it to the baseline (detect-secrets scan --baseline .secrets.baseline).",
              file=sys.stderr)
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
