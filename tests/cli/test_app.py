"""The command table (``loist.cli``): every command has help and ``--json``; the console script
and ``python -m loist`` both run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import run
from tests.support.audio import AudioFactory


def test_every_command_has_help_and_a_json_mode() -> None:
    code, out, _ = run("--help")
    assert code == 0
    commands = ["serve", "ingest", "show", "list", "search", "update", "delete", "seed", "fsck", "smoke", "export", "import",
                "backup", "restore", "worker"]
    for name in commands:
        assert name in out
        code, help_text, _ = run(name, "--help")
        assert code == 0, name
        assert "--json" in help_text, f"{name} has no --json"
    for group, sub in (("db", "upgrade"), ("db", "current"), ("db", "downgrade"), ("config", "check"),
                       ("jobs", "list"), ("jobs", "retry")):
        code, help_text, _ = run(group, sub, "--help")
        assert code == 0 and "--json" in help_text


def test_console_script_and_python_dash_m(embedded: Path, audio_factory: AudioFactory) -> None:
    env = {**os.environ, "LOIST_DATA_DIR": str(embedded)}
    loist = Path(sys.executable).with_name("loist")
    out = subprocess.run([str(loist), "ingest", "--json", str(audio_factory("mp3"))], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    track_id = json.loads(out.stdout.splitlines()[0])["id"]
    out = subprocess.run([sys.executable, "-m", "loist", "show", track_id, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["id"] == track_id
