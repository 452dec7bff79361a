"""A track by several artists is shared as "A & B": the player page, Open Graph and oEmbed."""

from __future__ import annotations

import httpx
import pytest

from tests.support.audio import AudioFactory
from tests.web.conftest import BASE_URL, WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_every_artist_is_named_in_what_unfurls_show(
    client: httpx.AsyncClient, world: WebWorld, audio_factory: AudioFactory
) -> None:
    track = await world.library.ingest_file(audio_factory("ogg", tags={"title": "Pas de deux"}, duration=1.0))
    await world.library.update_tags(track.id, {"artists": ["Anouk", "Bertil"]})
    page = (await client.get(f"/embed/{track.id}")).text
    assert '<meta property="og:description" content="Anouk &amp; Bertil' in page
    oembed = (await client.get("/oembed", params={"url": f"{BASE_URL}/embed/{track.id}"})).json()
    assert oembed["author_name"] == "Anouk & Bertil"
