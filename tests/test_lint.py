"""The same static checks the pipelines gate on (cloudbuild*.yaml: ruff, bandit), run by the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "src", "tests", "bench", "deploy", "loadtest")
    assert result.returncode == 0, result.stdout + result.stderr


def test_bandit_finds_nothing_of_medium_severity_or_worse() -> None:
    result = run(str(BIN / "bandit"), "--quiet", "--recursive", "src", "--severity-level", "medium")
    assert result.returncode == 0, result.stdout + result.stderr
