"""Folders over MCP: ``ingest_folder`` adds every audio file in one (as ``loist ingest FOLDER``), and a
``file`` source that names a folder is answered with that tool, not "no such file"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcp import Client

from loist.library.service import Library
from loist.mcp.server import LoistMCPServer
from tests.mcp.test_tools import assert_error, assert_ok
from tests.support.audio import AudioFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_ingest_folder_adds_every_audio_file_and_reports_each(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "Demos"
    (folder / "b-sides").mkdir(parents=True)
    known = await library.ingest_file(audio_factory("mp3", tags={"title": "Known demo"}))
    shutil.copy(audio_factory("mp3", tags={"title": "Known demo"}), folder / "known.mp3")
    shutil.copy(audio_factory("flac", tags={"title": "New demo"}), folder / "b-sides" / "new.flac")
    (folder / "notes.txt").write_text("lyrics, not audio")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(stdio_server) as c:
        out = assert_ok(await c.call_tool("ingest_folder", {"path": str(folder)}, progress_callback=on_progress))
    assert (out["created"], out["existing"], out["failed"], out["skipped"]) == (1, 1, 0, 1)
    files = {Path(item["path"]).name: item for item in out["files"]}
    assert files["known.mp3"]["status"] == "EXISTING" and files["known.mp3"]["id"] == str(known.id)
    assert files["new.flac"]["status"] == "CREATED" and files["new.flac"]["title"] == "New demo"
    assert files["notes.txt"]["status"] == "SKIPPED" and out["truncated"] is False
    assert (await library.get(files["new.flac"]["id"])).tags.title == "New demo"
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen) and seen[-1][0] == 3


async def test_a_folder_as_a_file_source_names_ingest_folder(
    stdio_server: LoistMCPServer, library: Library, tmp_path: Path
) -> None:
    folder = tmp_path / "Demos"
    folder.mkdir()
    before = await library.catalog.count()
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(folder)}})
    error = assert_error(result, "INVALID_ARGUMENT", "is a folder", "call ingest_folder with this path")
    assert error["details"] == {"path": str(folder), "kind": "folder"}
    assert await library.catalog.count() == before


async def test_ingest_folder_refuses_http_and_a_missing_folder(
    stdio_server: LoistMCPServer, hosted_server: LoistMCPServer, tmp_path: Path
) -> None:
    async with Client(hosted_server) as c:
        assert_error(await c.call_tool("ingest_folder", {"path": str(tmp_path)}), "INVALID_ARGUMENT", "stdio")
    async with Client(stdio_server) as c:
        assert_error(await c.call_tool("ingest_folder", {"path": str(tmp_path / "nope")}), "NOT_FOUND", "no such folder")
