"""GCS with signing credentials: the stable URLs answer 302 to a fresh V4 signed URL.

The emulator's anonymous credentials cannot sign, so this module gives the store a client with a
real (freshly generated) service-account key and a pre-set access token: URLs are signed locally
exactly as in production, and point at the emulator, which serves them (Range included).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import storage
from google.oauth2 import service_account

from loist.config import Settings
from loist.storage.gcs import GcsBlobStore
from tests.support.audio import AudioFactory
from tests.web.conftest import BASE_URL, WebWorld, app_client, make_settings, open_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

TTL_S = 600


def signing_client(emulator_url: str) -> storage.Client:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "loist-test@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
    )
    credentials.token = "emulator-ignores-this"  # valid token: no refresh (no network) needed
    credentials.expiry = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
    return storage.Client(project="test", credentials=credentials, client_options={"api_endpoint": emulator_url})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def signed(
    module_bucket: str, gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory
) -> AsyncIterator[tuple[WebWorld, httpx.AsyncClient]]:
    settings: Settings = make_settings(
        tmp_path_factory.mktemp("web-gcs-signed"), storage_backend="gcs", gcs_bucket_name=module_bucket,
        signed_url_ttl_s=TTL_S, cors_origins=["https://notion.example"],
    )
    async with open_world(settings, audio_factory) as world:
        world.library.store = GcsBlobStore(module_bucket, "test", client=signing_client(gcs_emulator))
        async with app_client(settings, world.library) as client:
            yield world, client


async def test_stream_redirects_to_fresh_signed_url(
    signed: tuple[WebWorld, httpx.AsyncClient], gcs_emulator: str
) -> None:
    world, client = signed
    r = await client.get(f"/audio/{world.with_art.id}/stream", headers={"Range": "bytes=0-99"})
    assert r.status_code == 302
    assert r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    parts = urlsplit(location)
    assert location.startswith(gcs_emulator)
    assert parts.path.endswith(world.with_art.blob_key)
    query = parse_qs(parts.query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == [str(TTL_S)]
    assert "X-Goog-Signature" in query

    # Each request mints a fresh URL (never a cached one).
    again = await client.get(f"/audio/{world.with_art.id}/stream")
    assert again.status_code == 302

    # The browser sends its Range straight to the store.
    data = world.with_art_path.read_bytes()
    async with httpx.AsyncClient() as direct:
        fetched = await direct.get(location, headers={"Range": "bytes=0-99"})
    assert fetched.status_code in (200, 206)
    body = fetched.content
    assert body[:100] == data[:100]


async def test_thumbnail_redirects_too(signed: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = signed
    r = await client.get(f"/audio/{world.with_art.id}/thumbnail")
    assert r.status_code == 302 and r.headers["cache-control"] == "no-store"
    assert urlsplit(r.headers["location"]).path.endswith(world.with_art.thumbnail_key)


async def test_redirect_carries_cors(signed: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = signed
    r = await client.get(f"/audio/{world.with_art.id}/stream", headers={"Origin": "https://notion.example"})
    assert r.status_code == 302
    assert r.headers["access-control-allow-origin"] == "https://notion.example"


async def test_public_metadata_never_carries_signed_urls(
    signed: tuple[WebWorld, httpx.AsyncClient], gcs_emulator: str
) -> None:
    world, client = signed
    page = await client.get(f"/embed/{world.with_art.id}")
    assert page.status_code == 200
    head = page.text.split("</head>")[0]
    assert "X-Goog-Signature" not in page.text
    assert f'property="og:audio" content="{BASE_URL}/audio/{world.with_art.id}/stream"' in head
    # ...but the page may load media from the store the stream redirects to.
    csp = page.headers["content-security-policy"]
    media_src = next(d for d in csp.split(";") if d.strip().startswith("media-src"))
    assert gcs_emulator in media_src
    oembed = await client.get("/oembed", params={"url": f"{BASE_URL}/embed/{world.with_art.id}"})
    assert "X-Goog-Signature" not in json.dumps(oembed.json())
