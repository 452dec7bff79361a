"""Fixtures for the web tests: a real library per storage backend, with real tracks, and an app.

Each test module gets a library (SQLite catalog + local folder, or + a bucket in the in-process
GCS emulator) holding tracks ingested from ffmpeg-made audio, and an ``httpx.AsyncClient`` talking
to ``create_app`` through ``ASGITransport`` with the app's lifespan running. Modules run their
tests in the module's event loop (``pytestmark`` in each module).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from loist.config import Settings
from loist.model import Track
from loist.web.app import create_app
from tests.support.audio import AudioFactory

if TYPE_CHECKING:
    from loist.library.service import Library

BASE_URL = "https://music.example.test"
TRICKY_TITLE = 'Rock\'n\'roll </title><script>alert("x")</script> & “quotes” 🎸'
TRICKY_ARTIST = "Ünïcødé & <b>Sons</b>"


def make_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings for a test: never read a developer's ``.env``."""
    values.setdefault("embed_base_url", BASE_URL)
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg]


@dataclass
class WebWorld:
    """An open library with known tracks, and the files they were made from."""

    settings: Settings
    library: Library
    with_art: Track  # mp3, tricky tags, artwork
    plain: Track  # ogg, no artwork
    with_art_path: Path
    plain_path: Path
    big: Track  # a WAV larger than one streaming batch (exercises the streamed path)
    big_path: Path


@asynccontextmanager
async def open_world(settings: Settings, audio: AudioFactory) -> AsyncIterator[WebWorld]:
    from loist.library.service import Library

    lib = await Library.open(settings)
    try:
        art_path = audio("mp3", tags={"title": TRICKY_TITLE, "artist": TRICKY_ARTIST, "album": "Album"},
                         artwork=True, duration=3.0)
        plain_path = audio("ogg", tags={"title": "Plain", "artist": "Nobody"}, duration=1.0)
        big_path = audio("wav", tags={"title": "Big"}, duration=14.0)  # ~2.5 MB
        with_art = await lib.ingest_file(art_path)
        plain = await lib.ingest_file(plain_path)
        big = await lib.ingest_file(big_path)
        yield WebWorld(settings, lib, with_art, plain, art_path, plain_path, big, big_path)
    finally:
        await lib.close()


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """Run the app's lifespan in a task of its own.

    The MCP session manager's task group must be entered and exited by the same task; a
    pytest-asyncio fixture sets up and tears down in different tasks, so the lifespan lives in a
    dedicated task that waits for the stop signal.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # startup failed: surface its exception
        waiter.cancel()
        task.result()
    try:
        yield app
    finally:
        stop.set()
        await task


@asynccontextmanager
async def app_client(settings: Settings, library: Library | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``create_app(settings, library)`` with the lifespan running."""
    async with running(create_app(settings, library)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@pytest.fixture(scope="module")
def local_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("web-local"), cors_origins=["https://notion.example"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_settings: Settings, audio_factory: AudioFactory) -> AsyncIterator[WebWorld]:
    async with open_world(local_settings, audio_factory) as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(world: WebWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(world.settings, world.library) as c:
        yield c


@pytest.fixture(scope="module")
def module_bucket(gcs_emulator: str) -> Iterator[str]:
    """A bucket in the emulator for the whole module (the shared ``gcs_bucket`` is per test)."""
    from tests.support.gcs import gcs_client

    name = f"web-{uuid.uuid4().hex[:16]}"
    gcs_client().create_bucket(name)
    yield name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gcs_world(
    module_bucket: str, tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory
) -> AsyncIterator[WebWorld]:
    settings = make_settings(tmp_path_factory.mktemp("web-gcs"), storage_backend="gcs", gcs_bucket_name=module_bucket)
    async with open_world(settings, audio_factory) as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gcs_client_http(gcs_world: WebWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(gcs_world.settings, gcs_world.library) as c:
        yield c
