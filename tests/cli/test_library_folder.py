"""Where the library lives: the per-user default, an unusable ``LOIST_DATA_DIR``, the old ``./data``
default (``loist.library.datadir``), in the commands, ``config check`` and ``serve``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loist.errors import EXIT_CODE, ErrorCode
from tests.cli.conftest import json_lines, run
from tests.support.audio import AudioFactory

CONFIG_INVALID = EXIT_CODE[ErrorCode.CONFIG_INVALID]


@pytest.fixture
def blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOIST_DATA_DIR below a regular file (like /etc/hostname/loist)."""
    afile = tmp_path / "hostname"
    afile.write_text("not a folder\n")
    monkeypatch.setenv("LOIST_DATA_DIR", str(afile / "loist"))
    return afile


def test_an_unusable_data_folder_is_config_invalid_naming_the_setting(blocked: Path) -> None:
    for args in (["list"], ["ingest", str(blocked)], ["search", "x"], ["db", "upgrade"]):
        code, out, err = run(*args)
        assert code == CONFIG_INVALID, args
        assert f"CONFIG_INVALID: LOIST_DATA_DIR cannot be used ({blocked / 'loist'}: {blocked} is a file, not a folder)" in err
        assert "unset it for the per-user default" in err
        assert "Traceback" not in out + err


def test_config_check_reports_an_unusable_data_folder(blocked: Path) -> None:
    code, out, err = run("config", "check")
    assert code == CONFIG_INVALID
    assert "configuration OK" not in err and "problem LOIST_DATA_DIR cannot be used" in err
    code, out, _ = run("config", "check", "--json")
    report = json.loads(out)
    assert report["ok"] is False and "is a file, not a folder" in report["problems"][0]


def test_stdio_server_on_an_unusable_data_folder(blocked: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "loist", "serve", "--transport", "stdio"], env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == CONFIG_INVALID
    assert "CONFIG_INVALID: LOIST_DATA_DIR cannot be used" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""  # stdout belongs to MCP


def test_a_read_only_working_folder(tmp_path: Path) -> None:
    """LOIST_DATA_DIR=./data where the current folder is on a read-only mount (a private mount
    namespace made with ``unshare``; root ignores permission bits, not a read-only file system)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    here = tmp_path / "readonly"
    here.mkdir()
    script = (f"mount --bind {here} {here} && mount -o remount,bind,ro {here} && cd {here} && "
              f"LOIST_DATA_DIR=./data exec {sys.executable} -m loist list")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if "mount" in done.stderr and done.returncode != CONFIG_INVALID:
        pytest.skip(f"this machine allows no private read-only mount: {done.stderr.strip()}")
    assert done.returncode == CONFIG_INVALID, done.stderr
    assert f"LOIST_DATA_DIR cannot be used ({here / 'data'}: {here} is on a read-only file system)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_default_library_is_the_same_wherever_a_command_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, audio_factory: AudioFactory
) -> None:
    monkeypatch.delenv("LOIST_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    library = tmp_path / "xdg" / "loist"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    code, out, _ = run("ingest", "--json", str(audio_factory("mp3")))
    track_id = json_lines(out)[0]["id"]
    monkeypatch.chdir(tmp_path / "b")
    code, out, _ = run("list", "--json")
    assert [t["id"] for t in json.loads(out)["items"]] == [track_id]
    assert (library / "loist.db").is_file() and not (tmp_path / "a" / "data").exists()
    code, out, _ = run("config", "check", "--json")
    assert json.loads(out)["settings"]["LOIST_DATA_DIR"] == str(library)
    code, out, _ = run("config", "check")
    assert "LOIST_DATA_DIR" in out and str(library) in out
    done = subprocess.run([sys.executable, "-m", "loist", "serve", "--transport", "stdio"], env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"library folder {library}" in done.stderr


def test_an_old_data_folder_here_is_pointed_out_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """./data from the old default holds a library: the command says so and keeps to the per-user one."""
    monkeypatch.setenv("LOIST_DATA_DIR", "./data")
    run("seed", "--synthetic", "2")
    monkeypatch.delenv("LOIST_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    code, out, err = run("list", "--json")
    assert code == 0 and json.loads(out)["items"] == []
    assert f"hint: {tmp_path / 'data'} holds a library" in err and "LOIST_DATA_DIR=" in err
    monkeypatch.setenv("LOIST_DATA_DIR", "./data")
    code, out, err = run("list", "--json")
    assert len(json.loads(out)["items"]) == 2 and "hint" not in err
