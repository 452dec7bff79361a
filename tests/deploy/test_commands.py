"""The ``loist`` commands the Dockerfile, the Cloud Run job, compose and the pipelines call exist
with the options they pass (a renamed option would otherwise fail only in the cloud)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loist_infra.envspec import MIGRATE_COMMAND

LOIST = str(Path(sys.executable).parent / "loist")


def help_text(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([LOIST, *command, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"loist {' '.join(command)} --help failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (("serve",), ["--transport", "--host", "--port"]),  # Dockerfile CMD
        (tuple(MIGRATE_COMMAND[1:]), []),  # Cloud Run job and compose `migrate`
        (("smoke",), ["--base-url", "--token"]),  # pipelines' deployment check
    ],
)
def test_deployment_commands_exist(command: tuple[str, ...], options: list[str]) -> None:
    text = help_text(*command)
    for option in options:
        assert option in text, f"loist {' '.join(command)} has no {option}"
