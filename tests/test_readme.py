"""The README cannot drift: its first commands, its links, and the commands it shows exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from loist.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```", 2)[1]
    assert "make serve" in first_block and "make test" in first_block
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_linked_doc_exists() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_every_loist_command_shown_exists() -> None:
    runner = CliRunner()
    shown = set(re.findall(r"^loist ([a-z]+(?: [a-z]+)?)", README, re.M))
    assert shown, "the README shows no loist commands"
    for command in shown:
        words = command.split()
        result = runner.invoke(app, [*words[:2], "--help"])
        if result.exit_code != 0:  # a one-word command followed by an argument
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, command
