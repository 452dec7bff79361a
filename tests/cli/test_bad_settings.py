"""Every ``loist`` command, run against settings that cannot work, ends with a coded error and its
documented exit code (docs/operations.md), never a traceback. The command list is read from the
command table, so a new command must say here how it is run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from loist.cli import app
from loist.errors import EXIT_CODE, ErrorCode

ID = "00000000-0000-0000-0000-000000000000"

# How each command is run (its required arguments), by its path in the command table.
ARGS: dict[str, list[str]] = {
    "serve": [], "ingest": ["{tmp}"], "show": [ID], "list": [], "search": ["x"], "update": [ID, "--title", "x"],
    "delete": [ID, "--yes"], "seed": ["--synthetic", "1"], "fsck": [], "smoke": ["--base-url", "http://127.0.0.1:9"],
    "export": ["{tmp}/out.jsonl"], "import": ["{tmp}/in.jsonl"], "backup": ["{tmp}/backup"], "restore": ["{tmp}/backup"],
    "worker": ["--once"], "jobs list": [], "jobs retry": ["--dead"],
    "db upgrade": [], "db downgrade": ["base"], "db current": [], "config check": [],
}
# Commands that never read the library's settings: what they answer instead.
OWN_RULES = {
    "smoke": 1,  # checks a deployment by URL: the unreachable one fails its checks
    "restore": 2,  # its argument (a backup folder; here none) is checked before anything else: INVALID_ARGUMENT
}

SCENARIOS = {
    "data folder under a file": ({"LOIST_DATA_DIR": "{tmp}/afile/loist"}, ErrorCode.CONFIG_INVALID),
    "a value pydantic refuses": ({"PORT": "eighty"}, ErrorCode.CONFIG_INVALID),
    "a profile rule": ({"AUTH_ENABLED": "true"}, ErrorCode.CONFIG_INVALID),
    "database unreachable": ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/loist"}, ErrorCode.DATABASE_FAILED),
}
NO_DATABASE = {"config check": 0}  # validates the settings, does not connect


def commands() -> list[str]:
    found = []
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        found += [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
    return found


def test_every_command_is_covered() -> None:
    missing = sorted(set(commands()) - set(ARGS))
    assert not missing, f"add the arguments of {missing} to ARGS"


CASES = [(command, scenario) for command in sorted(ARGS) for scenario in sorted(SCENARIOS)
         if command not in OWN_RULES or scenario == "database unreachable"]  # settings-blind: once is enough


@pytest.mark.parametrize(("command", "scenario"), CASES)
def test_bad_settings_give_a_coded_error_never_a_traceback(
    command: str, scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("a file where a folder should be")
    env, code = SCENARIOS[scenario]
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    args = [*command.split(), *(a.format(tmp=tmp_path) for a in ARGS[command]), "--json"]
    result = CliRunner().invoke(app, args)
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    expected = OWN_RULES.get(command, NO_DATABASE.get(command, EXIT_CODE[code]) if code == ErrorCode.DATABASE_FAILED
                             else EXIT_CODE[code])
    assert result.exit_code == expected, output
    if expected == EXIT_CODE[code]:  # the error as JSON; `config check` lists problems in its report instead
        assert f'"code": "{code}"' in result.stdout or '"ok": false' in result.stdout, output
