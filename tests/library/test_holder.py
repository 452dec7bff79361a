"""The one library opener (``LibraryHolder``) the web app, the MCP server and the CLI share."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from loist.config import Settings
from loist.errors import ConfigInvalid
from loist.library.holder import LibraryHolder
from loist.library.service import Library
from tests.support.closes import record_closes


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[Library]:
    return record_closes(monkeypatch)


async def test_an_empty_holder_fails_loudly_with_its_name() -> None:
    holder = LibraryHolder(name="the test's library")
    assert not holder.is_open
    with pytest.raises(RuntimeError, match="the test's library is not open"):
        _ = holder.library


async def test_users_share_one_library_closed_when_the_last_leaves(tmp_path: Path, closed: list[Library]) -> None:
    holder = LibraryHolder()
    settings = _settings(tmp_path)
    async with holder.opened(settings) as first:
        async with holder.opened(settings) as second:
            assert first is second is holder.library
        assert holder.is_open and not closed  # one user is still inside
        assert (await first.health())["database"]["ok"] is True
    assert closed == [first] and not holder.is_open
    async with holder.opened(settings) as again:  # opens a fresh one on the next use
        assert again is not first
    assert closed == [first, again]


async def test_a_library_handed_in_is_lent_and_never_closed(tmp_path: Path, closed: list[Library]) -> None:
    library = await Library.open(_settings(tmp_path))
    try:
        holder = LibraryHolder(library)
        assert holder.is_open and holder.library is library
        async with holder.opened(_settings(tmp_path / "elsewhere")) as lent:
            assert lent is library  # the settings do not matter: nothing is opened
        assert holder.library is library and closed == []
        assert not (tmp_path / "elsewhere").exists()
    finally:
        await library.close()


async def test_a_failed_open_leaves_the_holder_closed_and_usable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    holder = LibraryHolder()
    with pytest.raises(ConfigInvalid, match="LOIST_DATA_DIR cannot be used"):
        async with holder.opened(_settings(blocker)):
            pytest.fail("the block must not run when the library cannot open")
    assert not holder.is_open
    async with holder.opened(_settings(tmp_path)) as library:  # the user count did not drift
        assert holder.library is library
    assert not holder.is_open


async def test_a_cancelled_user_still_leaves(tmp_path: Path, closed: list[Library]) -> None:
    holder = LibraryHolder()
    inside = anyio.Event()

    async def user() -> None:
        async with holder.opened(_settings(tmp_path)):
            inside.set()
            await anyio.Event().wait()  # until cancelled

    async with anyio.create_task_group() as tg:
        tg.start_soon(user)
        await inside.wait()
        assert holder.is_open
        tg.cancel_scope.cancel()
    assert not holder.is_open and len(closed) == 1
