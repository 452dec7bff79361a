"""A ``file`` source that names a folder is answered with what to do, not "no such file"."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from loist.library.service import Library
from loist.mcp.server import LoistMCPServer
from tests.mcp.test_tools import assert_error

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_folder_is_refused_with_the_way_to_add_it(
    stdio_server: LoistMCPServer, library: Library, tmp_path: Path
) -> None:
    folder = tmp_path / "Demos"
    folder.mkdir()
    before = await library.catalog.count()
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(folder)}})
    error = assert_error(result, "INVALID_ARGUMENT", "is a folder", "loist ingest", "once for each audio file")
    assert error["details"] == {"path": str(folder), "kind": "folder"}
    assert "no such file" not in result.content[0].text  # type: ignore[union-attr]
    assert await library.catalog.count() == before
