"""A new library opened by ``loist serve`` is created from the baseline, works, and takes later migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from loist.catalog.migrate import current, downgrade, heads, upgrade
from loist.config import Settings
from loist.library.service import Library
from loist.model import SearchRequest
from tests.support.audio import AudioFactory
from tests.support.baseline import sqlite_dump
from tests.support.served import serving


def test_serve_creates_a_new_library_that_works_and_later_migrations_upgrade(
    tmp_path: Path, audio_factory: AudioFactory
) -> None:
    data_dir = tmp_path / "library"
    with serving(tmp_path, {"LOIST_DATA_DIR": str(data_dir)}) as served:
        assert httpx.get(f"{served.base}/health/ready", timeout=10).json()["status"] == "ok"
    database = data_dir / "loist.db"
    url = f"sqlite:///{database}"
    assert asyncio.run(current(url)) == heads()[0]
    replayed = tmp_path / "replayed.db"
    asyncio.run(upgrade(f"sqlite:///{replayed}", replay=True))
    assert sqlite_dump(database) == sqlite_dump(replayed)  # what serve made is what the history makes

    async def later_migrations_then_use() -> None:
        await downgrade(url, "0007")  # as if 0008 and 0009 were new: Alembic applies them
        await upgrade(url)
        assert await current(url) == heads()[0]
        library = await Library.open(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        try:
            track = await library.ingest_file(audio_factory("flac", tags={"title": "Fresh Start", "artist": "Newcomer"}))
            assert [item.id for item in (await library.list()).items] == [track.id]
            found = await library.search(SearchRequest(query="newcomer"))
            assert [hit.track.id for hit in found.items] == [track.id]
        finally:
            await library.close()

    asyncio.run(later_migrations_then_use())
    assert sqlite_dump(database)["objects"] == sqlite_dump(replayed)["objects"]
