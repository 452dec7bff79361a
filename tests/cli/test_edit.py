"""``loist update`` (tags, the same rules as the MCP tool) and ``loist delete`` (asks first)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loist.errors import EXIT_CODE, ErrorCode
from loist.model import MAX_TAG_TEXT, TAG_FIELDS
from tests.cli.conftest import json_lines, run
from tests.support.audio import AudioFactory


@pytest.fixture
def track_id(audio_factory: AudioFactory) -> str:
    tags = {"title": "Before", "artist": "Someone", "album": "Old Album", "genre": "Jazz", "date": "2001"}
    code, out, _ = run("ingest", "--json", str(audio_factory("mp3", tags=tags)))
    assert code == 0
    return json_lines(out)[0]["id"]


def test_update_changes_the_tags_given_and_keeps_the_rest(track_id: str) -> None:
    code, out, _ = run("update", track_id, "--title", "After", "--genre", "Rock", "--genre", "Pop",
                       "--year", "1999", "--clear", "album", "--json")
    assert code == 0
    tags = json.loads(out)["tags"]
    assert tags["title"] == "After" and tags["genres"] == ["Rock", "Pop"] and tags["year"] == 1999
    assert tags["album"] is None
    assert tags.get("artist", tags.get("artists")) in ("Someone", ["Someone"])  # kept
    code, out, _ = run("show", track_id, "--json")
    assert json.loads(out)["tags"]["title"] == "After"
    code, out, _ = run("search", "after", "--json")
    assert [h["track"]["id"] for h in json.loads(out)["items"]] == [track_id]
    code, out, _ = run("update", track_id, "--album", "New Album")  # text mode: the track as `show` prints it
    assert code == 0 and "tags.album" in out and "New Album" in out and f"/embed/{track_id}" in out


def test_update_artists_are_repeatable(track_id: str) -> None:
    code, out, err = run("update", track_id, "--artist", "A", "--artist", "B", "--json")
    if "artists" in TAG_FIELDS:  # tracks keep several artists
        assert code == 0 and json.loads(out)["tags"]["artists"] == ["A", "B"]
    else:
        assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
        assert "--artist once" in json.loads(out)["error"]["message"]
    code, out, _ = run("update", track_id, "--artist", "Solo", "--json")
    assert code == 0
    tags = json.loads(out)["tags"]
    assert tags.get("artists", [tags.get("artist")]) == ["Solo"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--year", "12"], "year"),
    (["--title", "x" * (MAX_TAG_TEXT + 1)], "title"),
    (["--genre", ""], "genres"),
    (["--clear", "loudness"], "not a tag"),
    (["--clear", "title", "--title", "x"], "give one of them"),
    ([], "nothing to change"),
])
def test_update_refuses_what_the_mcp_tool_refuses(track_id: str, args: list[str], needle: str) -> None:
    code, out, _ = run("update", track_id, *args, "--json")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    error = json.loads(out)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and needle in error["message"]
    code, out, _ = run("show", track_id, "--json")
    assert json.loads(out)["tags"]["title"] == "Before"  # nothing half-written


def test_update_an_unknown_track_is_not_found() -> None:
    code, out, _ = run("update", "00000000-0000-0000-0000-000000000000", "--title", "x", "--json")
    assert code == EXIT_CODE[ErrorCode.NOT_FOUND]


def test_delete_without_a_terminal_needs_yes(track_id: str) -> None:
    code, out, err = run("delete", track_id)
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    assert "--yes" in err
    assert run("show", track_id, "--json")[0] == 0  # still there
    code, out, _ = run("delete", track_id, "-y", "--json")
    assert code == 0 and json.loads(out) == {"deleted": track_id}


def _on_a_terminal(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m loist ARGS`` on a pseudo-terminal, answer the question, return (exit code, screen)."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "loist", *args], stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        if not answered and b"[y/N]" in screen:
            os.write(main, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(main)
    return proc.wait(timeout=30), screen.decode(errors="replace")


def test_delete_on_a_terminal_asks_first(track_id: str, embedded: Path) -> None:
    env = {**os.environ, "LOIST_DATA_DIR": str(embedded)}
    code, screen = _on_a_terminal(["delete", track_id], b"n\n", env)
    assert "Someone - Before" in screen and "[y/N]" in screen
    assert code == 1 and "nothing deleted" in screen
    assert run("show", track_id, "--json")[0] == 0
    code, screen = _on_a_terminal(["delete", track_id], b"y\n", env)
    assert code == 0 and f"deleted {track_id}" in screen
    assert run("show", track_id, "--json")[0] == EXIT_CODE[ErrorCode.NOT_FOUND]
