"""GcsBlobStore specifics, against the in-process gcp-storage-emulator (and real URL signing)."""

from __future__ import annotations

import base64
import math
import os
import socket
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import google.auth.compute_engine
import google.auth.exceptions
import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from loist.errors import InvalidArgument, StorageFailed
from loist.storage import CHUNK_SIZE, audio_key, open_blob_store
from loist.storage.gcs import RANGE_WINDOW, UPLOAD_CHUNK_SIZE, GcsBlobStore
from tests.storage.conftest import make_settings
from tests.support.gcs import gcs_client

KEY = audio_key("ef" + "2" * 62, "flac")
SA_EMAIL = "loist-runner@test-project.iam.gserviceaccount.com"


def big_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def record_requests(store: GcsBlobStore) -> list[requests.Response]:
    """Observe the real HTTP traffic of the store's client (a requests response hook)."""
    seen: list[requests.Response] = []
    store.client._http.hooks["response"].append(lambda response, **_: seen.append(response))
    return seen


@pytest.fixture
def store(gcs_bucket: str) -> GcsBlobStore:
    built = open_blob_store(make_settings(storage_backend="gcs", gcs_bucket_name=gcs_bucket))
    assert isinstance(built, GcsBlobStore)
    return built


def test_open_blob_store_needs_only_the_emulator_variable(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    store = open_blob_store(make_settings(storage_backend="gcs", gcs_bucket_name=gcs_bucket))
    assert store.name == "gcs"
    assert isinstance(store.client._credentials, AnonymousCredentials)  # type: ignore[attr-defined]
    store.ping()
    store.put_bytes("a/b.txt", b"hello", "text/plain")
    assert gcs_client().bucket(gcs_bucket).blob("a/b.txt").download_as_bytes() == b"hello"


def test_emulator_serves_byte_ranges_correctly(gcs_emulator: str, gcs_bucket: str) -> None:
    """The ranged reads above rely on this: check the emulator's Range handling directly."""
    gcs_client().bucket(gcs_bucket).blob("r.bin").upload_from_string(b"0123456789")
    url = f"{gcs_emulator}/download/storage/v1/b/{gcs_bucket}/o/r.bin?alt=media"
    response = httpx.get(url, headers={"Range": "bytes=3-6"})
    assert response.status_code == 206
    assert response.content == b"3456"
    assert response.headers["content-range"] == "bytes 3-6/10"
    assert httpx.get(url, headers={"Range": "bytes=9-"}).content == b"9"


def test_ping_missing_bucket_is_storage_failed(gcs_emulator: str) -> None:
    store = open_blob_store(make_settings(storage_backend="gcs", gcs_bucket_name="no-such-bucket-here"))
    with pytest.raises(StorageFailed, match="no-such-bucket-here.*does not exist"):
        store.ping()


def test_writes_to_a_missing_bucket_are_storage_failed_not_not_found(gcs_emulator: str) -> None:
    store = GcsBlobStore("no-such-bucket-here")
    with pytest.raises(StorageFailed):
        store.put_bytes(KEY, b"x", None)


def test_unreachable_service_is_storage_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
    )
    store = GcsBlobStore("some-bucket", client=client, retry=None)
    for call in (store.ping, lambda: store.stat(KEY), lambda: store.put_bytes(KEY, b"x", None)):
        with pytest.raises(StorageFailed) as caught:
            call()
        assert caught.value.code == "STORAGE_FAILED"
        assert "some-bucket" in caught.value.message and "Bearer" not in caught.value.message


def test_no_credentials_is_a_clear_storage_failed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    store = GcsBlobStore("some-bucket", project="p")  # constructing it does no I/O
    with pytest.raises(StorageFailed, match="no Google credentials"):
        store.ping()


def test_large_upload_is_chunked(store: GcsBlobStore, tmp_path: Path) -> None:
    """Resumable upload in UPLOAD_CHUNK_SIZE pieces: the client never holds more than one chunk."""
    size = 2 * UPLOAD_CHUNK_SIZE + 12_345
    data = big_file(tmp_path / "large.bin", size)
    seen = record_requests(store)
    store.put_file(KEY, tmp_path / "large.bin", "audio/flac")
    puts = [r.request for r in seen if r.request.method == "PUT"]
    assert len(puts) == math.ceil(size / UPLOAD_CHUNK_SIZE)
    assert max(len(p.body or b"") for p in puts) == UPLOAD_CHUNK_SIZE
    assert b"".join(store.iter_range(KEY)) == data


def test_failed_upload_leaves_nothing(gcs_bucket: str, tmp_path: Path) -> None:
    size = 2 * UPLOAD_CHUNK_SIZE + 1000  # three chunks: the drop happens before the final one
    big_file(tmp_path / "large.bin", size)
    store = GcsBlobStore(gcs_bucket, retry=None)
    puts = 0

    def drop_after_first_chunk(response: requests.Response, **_: Any) -> requests.Response:
        nonlocal puts
        if response.request.method == "PUT":
            puts += 1
            if puts > 1:  # fault injection on the wire: the connection drops mid-upload
                raise requests.ConnectionError("connection reset by peer")
        return response

    store.client._http.hooks["response"].append(drop_after_first_chunk)
    with pytest.raises(StorageFailed, match="connection reset"):
        store.put_file(KEY, tmp_path / "large.bin", "audio/flac")
    assert puts == 2
    assert not store.exists(KEY)
    assert list(gcs_client().list_blobs(gcs_bucket)) == []


def test_read_path_memory_is_bounded(store: GcsBlobStore, tmp_path: Path) -> None:
    """tracemalloc counts the in-process emulator too; the bound still holds well below the size."""
    size = 24 * 1024 * 1024
    big_file(tmp_path / "large.bin", size)
    store.put_file(KEY, tmp_path / "large.bin", "audio/flac")
    limit = 4 * RANGE_WINDOW + 4 * CHUNK_SIZE  # 5 MiB for a 24 MiB blob, emulator included

    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in store.iter_range(KEY))
        _, peak_read = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.download_to(KEY, tmp_path / "copy.bin")
        _, peak_copy = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size and (tmp_path / "copy.bin").stat().st_size == size
    assert peak_read < limit, peak_read
    assert peak_copy < limit, peak_copy


def test_read_range_is_one_ranged_get_and_nowait_asks_nothing(store: GcsBlobStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    store.put_bytes(KEY, data, None)
    seen = record_requests(store)
    assert store.read_range(KEY, 5, 2 * CHUNK_SIZE, nowait=True) is None  # network I/O always waits
    assert seen == []
    assert store.read_range(KEY, 5, 2 * CHUNK_SIZE) == data[5 : 2 * CHUNK_SIZE + 1]
    assert [r.request.method for r in seen] == ["GET", "GET"]  # the stat, then one ranged read
    assert seen[1].request.headers.get("range") == f"bytes=5-{2 * CHUNK_SIZE}"


def test_reads_are_pinned_to_one_generation(store: GcsBlobStore) -> None:
    """Every window of a stream asks for the generation that was stat-ed, so an object replaced
    mid-stream is never spliced from two versions (real GCS answers 404 for a replaced generation).

    The emulator ignores ``generation`` on downloads, so this checks what we send, on the wire.
    """
    store.put_bytes(KEY, b"a" * (3 * RANGE_WINDOW), None)
    seen = record_requests(store)
    chunks = list(store.iter_range(KEY, 10))
    assert sum(len(c) for c in chunks) == 3 * RANGE_WINDOW - 10
    stat_requests = [r for r in seen if "alt=media" not in r.request.url]
    media = [r for r in seen if "alt=media" in r.request.url]
    assert len(stat_requests) == 1 and len(media) == 3
    info_generation = stat_requests[0].json()["generation"]
    for response in media:
        assert parse_qs(urlsplit(response.request.url).query)["generation"] == [info_generation]
    assert [r.request.headers["Range"] for r in media] == [
        f"bytes=10-{RANGE_WINDOW + 9}",
        f"bytes={RANGE_WINDOW + 10}-{2 * RANGE_WINDOW + 9}",
        f"bytes={2 * RANGE_WINDOW + 10}-{3 * RANGE_WINDOW - 1}",
    ]


# --- signed URLs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_account_info() -> dict[str, str]:
    """A real RSA key made at test time, in the shape of a service-account key file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": SA_EMAIL,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def signed_store(info: dict[str, str], bucket: str = "loist-audio") -> GcsBlobStore:
    credentials = service_account.Credentials.from_service_account_info(info)
    return GcsBlobStore(bucket, client=storage.Client(project="test-project", credentials=credentials))


def test_signed_url_with_a_service_account_key(
    service_account_info: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    url = signed_store(service_account_info).signed_url(KEY, 900)
    assert url is not None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == "https://storage.googleapis.com"
    assert parts.path == f"/loist-audio/{KEY}"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["900"]
    assert query["X-Goog-Credential"][0].startswith(f"{SA_EMAIL}/")
    assert query["X-Goog-SignedHeaders"] == ["host"]
    signature = query["X-Goog-Signature"][0]
    assert len(signature) == 512 and int(signature, 16) > 0  # hex of a 2048-bit RSA signature


def test_signed_url_fetches_the_blob_from_the_emulator(
    service_account_info: dict[str, str], gcs_bucket: str
) -> None:
    """The emulator does not check signatures, but it proves the path and quoting are right."""
    gcs_client().bucket(gcs_bucket).blob(KEY).upload_from_string(b"signed bytes")
    url = signed_store(service_account_info, gcs_bucket).signed_url(KEY, 60)
    assert url is not None and unquote(urlsplit(url).path) == f"/{gcs_bucket}/{KEY}"
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"signed bytes"


@pytest.mark.parametrize("ttl", [0, -5, 7 * 24 * 3600 + 1])
def test_signed_url_rejects_bad_ttl(service_account_info: dict[str, str], ttl: int) -> None:
    with pytest.raises(InvalidArgument):
        signed_store(service_account_info).signed_url(KEY, ttl)


def test_signed_url_on_cloud_run_uses_iam_sign_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud Run credentials have no key: we pass the SA email + access token so IAM signBlob signs.

    MOCKED: only the Google control plane, which cannot run here: the metadata server (token and
    email refresh) and the IAM signBlob HTTP call. URL building is the real library code.
    """
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    refreshes: list[object] = []

    def metadata_server_refresh(self: google.auth.compute_engine.Credentials, request: object) -> None:
        refreshes.append(request)
        self.token = "ya29.test-access-token"
        self.expiry = datetime(2999, 1, 1)  # naive UTC, as google-auth stores it
        self._service_account_email = SA_EMAIL

    sign_calls: list[tuple[Any, ...]] = []

    def iam_sign_blob(message: Any, access_token: str, service_account_email: str, *args: Any) -> str:
        sign_calls.append((access_token, service_account_email))
        return base64.b64encode(b"\x01\x02\x03\x04").decode()

    monkeypatch.setattr(google.auth.compute_engine.Credentials, "refresh", metadata_server_refresh)
    monkeypatch.setattr("google.cloud.storage._signing._sign_message", iam_sign_blob)
    credentials = google.auth.compute_engine.Credentials(universe_domain="googleapis.com")
    store = GcsBlobStore("loist-audio", client=storage.Client(project="p", credentials=credentials))

    url = store.signed_url(KEY, 600)
    assert url is not None
    assert len(refreshes) == 1  # "default" email and no token: refreshed once
    assert sign_calls == [("ya29.test-access-token", SA_EMAIL)]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Goog-Credential"][0].startswith(f"{SA_EMAIL}/")
    assert query["X-Goog-Expires"] == ["600"]
    assert query["X-Goog-Signature"] == ["01020304"]

    store.signed_url(KEY, 600)
    assert len(refreshes) == 1  # a valid token is reused, not refreshed per URL


def test_sign_blob_denied_is_storage_failed_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKED: the metadata server and the IAM signBlob call (which here answers 403)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    def metadata_server_refresh(self: google.auth.compute_engine.Credentials, request: object) -> None:
        self.token, self.expiry, self._service_account_email = (
            "ya29.secret-token",
            datetime(2999, 1, 1),
            SA_EMAIL,
        )

    def iam_denies(*args: Any) -> str:
        raise google.auth.exceptions.TransportError(
            "Error calling the IAM signBytes API: 403 PERMISSION_DENIED"
        )

    monkeypatch.setattr(google.auth.compute_engine.Credentials, "refresh", metadata_server_refresh)
    monkeypatch.setattr("google.cloud.storage._signing._sign_message", iam_denies)
    credentials = google.auth.compute_engine.Credentials(universe_domain="googleapis.com")
    store = GcsBlobStore("loist-audio", client=storage.Client(project="p", credentials=credentials))
    with pytest.raises(StorageFailed, match="serviceAccountTokenCreator") as caught:
        store.signed_url(KEY, 600)
    assert "ya29" not in caught.value.message


def test_signed_url_is_none_without_signing_credentials(gcs_bucket: str) -> None:
    assert GcsBlobStore(gcs_bucket).signed_url(KEY, 60) is None  # emulator: anonymous
