"""Fixtures for the MCP tests: a real library (SQLite + local blobs) and a server over it.

The library is opened once per test module (opening runs migrations); each test connects its own
official MCP client in memory (``async with Client(server)``), which is cheap. The client is opened
inside the test body, never in a yield fixture: its task group must start and stop in one task.
Modules using these fixtures run their tests in the module's event loop (``pytestmark``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from loist.config import Settings
from loist.mcp.server import LoistMCPServer, create_mcp_server
from tests.support.audio import AudioFactory

if TYPE_CHECKING:
    from loist.library.service import Library

BASE_URL = "https://music.example.test"


def make_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings for a test: never read a developer's ``.env``."""
    values.setdefault("embed_base_url", BASE_URL)
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def mcp_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # Loopback URLs are fetched in these tests, so the SSRF guard is relaxed for them only.
    return make_settings(tmp_path_factory.mktemp("mcp-data"), allow_private_urls=True, max_file_size_mb=20)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def library(mcp_settings: Settings) -> AsyncIterator[Library]:
    from loist.library.service import Library

    lib = await Library.open(mcp_settings)
    try:
        yield lib
    finally:
        await lib.close()


@pytest.fixture(scope="module")
def stdio_server(mcp_settings: Settings, library: Library) -> LoistMCPServer:
    """The server as it runs on the user's machine (file sources allowed)."""
    return create_mcp_server(mcp_settings, library, transport="stdio")


@pytest.fixture(scope="module")
def hosted_server(mcp_settings: Settings, library: Library) -> LoistMCPServer:
    """The server as it runs behind /mcp (file sources refused)."""
    return create_mcp_server(mcp_settings, library, transport="http")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tracks(library: Library, audio_factory: AudioFactory) -> dict[str, Any]:
    """Two catalogued tracks: an mp3 with artwork and full tags, a flac without artwork."""
    with_art = await library.ingest_file(
        audio_factory(
            "mp3",
            tags={
                "title": "Hoppípolla",
                "artist": "Sigur Rós",
                "album": "Takk...",
                "genre": "Post-rock",
                "date": "2005",
            },
            artwork=True,
        )
    )
    plain = await library.ingest_file(
        audio_factory(
            "flac", tags={"title": "Quiet Tone", "artist": "Test Ensemble", "genre": "Ambient"}, duration=2.0
        )
    )
    return {"art": with_art, "plain": plain}
