"""Export (anonymised) and import between libraries, on both backends.

``sqlite-local`` is the embedded shape; ``postgresql-gcs`` the cloud shape (real PostgreSQL, the
GCS client against gcp-storage-emulator). The "production" library is filled through the real
ingest paths (a loopback HTTP server with a signed-looking URL and private request headers, a
local file in a folder named after a person), exported, and imported into a second, empty
"staging" library.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loist.config import Settings
from loist.errors import DatabaseFailed, InvalidArgument
from loist.ingest.analyze import analyze
from loist.library.service import Library
from loist.library.synthetic import SYNTHETIC_BLOB_KEY
from loist.library.transfer import Anonymizer, export_to_file, import_file, read_export
from loist.model import Track
from tests.library.blobs import stored_keys
from tests.support.audio import AudioFactory
from tests.support.gcs import gcs_client
from tests.support.httpserver import LoopbackServer
from tests.support.pg import REJECTED, rejecting_title

SECRET_QUERY = "SECRET-QUERY-TOKEN-8f3a"
SECRET_HEADER = "SECRET-HEADER-VALUE-77b1"
SECRET_API_KEY = "SECRET-API-KEY-c0ffee"
SECRET_COMMENT = "SECRET-COMMENT call alice@example.com"
FILE_COMMENT = "voice memo for +1 555 0100"
PRIVATE_DIR = "bob-jones-private"
PRIVATE_NAME = "Alice Smith - private demo.mp3"


def _settings(data_dir: Path, shape: str, request: pytest.FixtureRequest, *, second: bool) -> Settings:
    base = {"data_dir": data_dir, "allow_private_urls": True, "_env_file": None}
    if shape == "sqlite-local":
        return Settings(**base)
    if second:
        url = request.getfixturevalue("fresh_pg_url")
        bucket = f"staging-{uuid.uuid4().hex[:12]}"
        gcs_client().create_bucket(bucket)
    else:
        url = request.getfixturevalue("pg_url")
        bucket = request.getfixturevalue("gcs_bucket")
    return Settings(**base, database_url=url, storage_backend="gcs", gcs_bucket_name=bucket)


@pytest.fixture(params=["sqlite-local", pytest.param("postgresql-gcs", marks=pytest.mark.postgres)])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Library, Library]]:
    """(production, staging): two empty libraries of the same shape."""
    prod = await Library.open(_settings(tmp_path / "prod", request.param, request, second=False), migrate=True)
    await prod.catalog.wipe()
    staging = await Library.open(_settings(tmp_path / "staging", request.param, request, second=True), migrate=True)
    try:
        yield prod, staging
    finally:
        await prod.close()
        await staging.close()


async def fill(lib: Library, audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path) -> dict[str, str]:
    """Three tracks through the real ingest paths; returns the secrets that must not survive."""
    mp3 = audio_factory("mp3", tags={"title": "Signed Link Song", "artist": "Public Artist", "album": "Open Album"},
                        artwork=True, duration=1.5)
    path = "/private/alice-smith/demo.mp3"
    http_server.file(path, mp3.read_bytes(), content_type="audio/mpeg")
    url = http_server.url(path) + f"?token={SECRET_QUERY}&dl=1"
    track = await lib.ingest_url(url, headers={"Authorization": f"Bearer {SECRET_HEADER}", "X-Api-Key": SECRET_API_KEY},
                                 filename=PRIVATE_NAME)
    await lib.update_tags(track.id, {"comment": SECRET_COMMENT})
    assert http_server.requests_to(path)[0].headers["authorization"] == f"Bearer {SECRET_HEADER}"

    folder = tmp_path / "home" / PRIVATE_DIR
    folder.mkdir(parents=True)
    flac = audio_factory.copy("flac", folder / "Bob Jones voice memo.flac",
                              tags={"title": "Memo Song", "artist": "Public Artist", "comment": FILE_COMMENT}, duration=1.2)
    await lib.ingest_file(flac)
    ogg = audio_factory.copy("ogg", folder / "third.ogg", tags={"title": "Third Song"}, artwork=True, duration=2.0)
    await lib.ingest_file(ogg)
    return {
        "url": url, "query token": SECRET_QUERY, "header": SECRET_HEADER, "api key": SECRET_API_KEY,
        "comment": SECRET_COMMENT, "email": "alice@example.com", "file comment": FILE_COMMENT,
        "url path": "alice-smith", "filename": "Alice Smith", "private dir": PRIVATE_DIR, "file name": "Bob Jones",
        "host": http_server.url("/").split("//", 1)[1].rstrip("/"), "tmp path": str(tmp_path),
    }


def copy_source(lib: Library) -> dict[str, Any]:
    """``import_file`` arguments that copy blobs from ``lib``'s store (its bucket or its blob folder)."""
    if lib.store.name == "gcs":
        return {"source_bucket": lib.settings.gcs_bucket_name}
    return {"source_dir": lib.settings.blob_dir}


def track_lines(path: Path) -> list[dict]:
    return [json.loads(line)["track"] for line in path.read_text().splitlines()[1:]]


async def test_anonymized_export_keeps_no_url_token_header_or_comment(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, _ = pair
    secrets_ = await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "export.jsonl"
    report = await export_to_file(prod, out, anonymize=True, salt="test-salt")
    assert report.tracks == 3
    text = out.read_text()
    leaked = {name: value for name, value in secrets_.items() if value in text}
    assert leaked == {}, f"survived anonymisation: {leaked}"
    header = json.loads(text.splitlines()[0])
    assert header["format"] == "loist-export" and header["version"] == 1 and header["anonymized"] is True
    assert "source.location" in header["anonymized_fields"]
    tracks = {t["tags"]["title"]: t for t in track_lines(out)}
    # public catalogue data, technical properties and content addresses are kept
    assert set(tracks) == {"Signed Link Song", "Memo Song", "Third Song"}
    signed = tracks["Signed Link Song"]
    assert signed["tags"]["artist"] == "Public Artist" and signed["tags"]["album"] == "Open Album"
    assert signed["audio"]["format"] == "mp3" and signed["sha256"] and signed["blob_key"].endswith(".mp3")
    assert signed["source"]["location"].startswith("https://") and ".anon.invalid/" in signed["source"]["location"]
    assert "token=" in signed["source"]["location"] and signed["source"]["original_filename"].endswith(".mp3")
    assert signed["tags"]["comment"].startswith("anonymized-")


async def test_headers_are_never_stored_even_without_anonymisation(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, _ = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "plain.jsonl"
    await export_to_file(prod, out)
    text = out.read_text()
    assert SECRET_QUERY in text  # a plain export is a faithful copy...
    assert SECRET_HEADER not in text and SECRET_API_KEY not in text  # ...but headers were never kept


async def test_anonymisation_is_deterministic_per_key(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, _ = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    await export_to_file(prod, a, anonymize=True, salt="one")
    await export_to_file(prod, b, anonymize=True, salt="one")
    await export_to_file(prod, c, anonymize=True, salt="two")
    assert track_lines(a) == track_lines(b)
    assert [t["source"] for t in track_lines(a)] != [t["source"] for t in track_lines(c)]
    assert json.loads(a.read_text().splitlines()[0])["key_id"] == json.loads(b.read_text().splitlines()[0])["key_id"]


def test_anonymizer_maps_equal_values_equally() -> None:
    anon = Anonymizer("k")
    first = anon.url("https://dl.example.com/u/alice/song.mp3?token=abc&x=1")
    assert first == anon.url("https://dl.example.com/u/alice/song.mp3?token=abc&x=1")
    other = anon.url("https://dl.example.com/u/bob/other.flac?token=abc")
    assert first.split("token=")[1].split("&")[0] == other.split("token=")[1]  # same token, same stand-in
    assert first.split("/")[2] == other.split("/")[2]  # same host, same stand-in
    assert anon.url("/home/alice/Music/song.flac").startswith("file:///anonymized/")
    assert anon.url("/home/alice/Music/song.flac").endswith(".flac")
    assert Anonymizer(None).url("https://a.example/x") != Anonymizer(None).url("https://a.example/x")  # random key


async def test_round_trip_regenerates_silence_of_the_same_length_and_format(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, staging = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "export.jsonl"
    await export_to_file(prod, out, anonymize=True, salt="s")
    originals = {t["id"]: t for t in track_lines(out)}

    report = await import_file(staging, out, blobs="silence")
    assert (report.read, report.created, report.regenerated, report.failed) == (3, 3, 3, [])
    for track_id, original in originals.items():
        track = await staging.get(track_id)
        assert track.tags.title == original["tags"]["title"]
        assert track.source.type == "import" and track.source.location == original["source"]["location"]
        assert track.sha256 != original["sha256"], "regenerated audio must carry its own sha256"
        assert track.audio.format == original["audio"]["format"]
        local = tmp_path / f"check-{track_id}"
        staging.store.download_to(track.blob_key, local)
        decoded = analyze(local)
        assert decoded.sha256 == track.sha256 and decoded.size_bytes == track.size_bytes
        assert decoded.audio.format == original["audio"]["format"]
        assert decoded.audio.duration_s == pytest.approx(original["audio"]["duration_s"], abs=0.1)
        assert (track.thumbnail_key is not None) == (original["thumbnail_key"] is not None)
        if track.thumbnail_key:
            assert staging.store.exists(track.thumbnail_key)

    again = await import_file(staging, out, blobs="silence")
    assert (again.created, again.existing) == (0, 3)
    assert await staging.catalog.count() == 3


async def test_round_trip_copies_blobs_bucket_to_bucket(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, staging = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "export.jsonl"
    await export_to_file(prod, out, anonymize=True, salt="s")
    source = copy_source(prod)
    report = await import_file(staging, out, **source)
    assert (report.created, report.copied, report.regenerated, report.fell_back) == (3, 3, 0, 0)
    for original in track_lines(out):
        track = await staging.get(original["id"])
        assert track.sha256 == original["sha256"] and track.blob_key == original["blob_key"]
        assert staging.store.stat(track.blob_key).size == original["size_bytes"]
        if track.thumbnail_key:
            assert staging.store.exists(track.thumbnail_key)
    again = await import_file(staging, out, **source)
    assert (again.created, again.existing, again.copied) == (0, 3, 0)


async def test_copy_falls_back_to_silence_for_a_blob_it_cannot_copy(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    prod, staging = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "export.jsonl"
    await export_to_file(prod, out)
    victim: Track = (await prod.list(limit=1)).items[0]
    prod.store.delete(victim.blob_key)  # the copy of this one will fail
    source = copy_source(prod)
    report = await import_file(staging, out, blobs="copy", **source)
    assert (report.created, report.copied, report.fell_back, report.regenerated) == (3, 2, 1, 1)
    assert (await staging.get(victim.id)).sha256 != victim.sha256


async def test_a_copy_that_falls_back_leaves_no_half_copied_blob(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """The audio copies but the thumbnail cannot (gone from the source): the track falls back to
    regenerated silence, and the audio already copied for it is deleted (no row will point at it)."""
    prod, staging = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    out = tmp_path / "export.jsonl"
    await export_to_file(prod, out)
    victim = next(t for t in (await prod.list()).items if t.thumbnail_key)
    prod.store.delete(victim.thumbnail_key)
    report = await import_file(staging, out, blobs="copy", **copy_source(prod))
    assert (report.created, report.copied, report.fell_back, report.regenerated) == (3, 2, 1, 1)
    regenerated = await staging.get(victim.id)
    assert regenerated.blob_key != victim.blob_key and staging.store.exists(regenerated.blob_key)
    assert not staging.store.exists(victim.blob_key)


async def test_import_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    with pytest.raises(InvalidArgument, match="not a Loist export"):
        read_export(bad)
    bad.write_text(json.dumps({"format": "loist-export", "version": 99}) + "\n")
    with pytest.raises(InvalidArgument, match="version 99"):
        read_export(bad)
    bad.write_text(json.dumps({"format": "loist-export", "version": 1}) + "\n" + '{"track": {"id": "x"}}\n')
    _, tracks = read_export(bad)
    with pytest.raises(InvalidArgument, match="line 2"):
        list(tracks)


@pytest.mark.parametrize("blobs", ["copy", "silence"])
async def test_a_failed_import_batch_leaves_no_blob_it_created(
    pair: tuple[Library, Library], audio_factory: AudioFactory, http_server: LoopbackServer, tmp_path: Path, blobs: str
) -> None:
    """What is forced, and how: staging's database refuses one row of the batch for real (a trigger
    from tests.support.pg.rejecting_title raises inside the batch's INSERT), after the importer put
    the batch's blobs in place: copied or regenerated audio, thumbnails and the shared synthetic blob.

    Every blob the batch created goes again. A blob staging held before stays: it belongs to
    staging's own row (one of the songs was ingested there too, and blob keys are content
    addresses, so copying that song finds its blob already there).
    """
    prod, staging = pair
    await fill(prod, audio_factory, http_server, tmp_path)
    await prod.seed_synthetic(1)
    out = tmp_path / "export.jsonl"
    await export_to_file(prod, out)
    own = await staging.ingest_file(tmp_path / "home" / PRIVATE_DIR / "Bob Jones voice memo.flac")
    before = stored_keys(staging)
    assert before == {own.blob_key}
    source = copy_source(prod)

    async with rejecting_title(staging.catalog, "Third Song"):
        with pytest.raises(DatabaseFailed, match=REJECTED):
            await import_file(staging, out, blobs=blobs, **source)  # type: ignore[arg-type]
    assert stored_keys(staging) == before
    assert [t.id for t in (await staging.list(status=None)).items] == [own.id]

    report = await import_file(staging, out, blobs=blobs, **source)  # type: ignore[arg-type]  # no trigger now
    assert report.failed == [] and report.created + report.existing == 4
    written = stored_keys(staging) - before  # what the failed batch had written, and had to remove
    assert SYNTHETIC_BLOB_KEY in written and len(written) == (5 if blobs == "copy" else 6)
    assert own.blob_key in stored_keys(staging)


def test_cli_export_and_import_round_trip(audio_factory: AudioFactory, tmp_path: Path) -> None:
    song = audio_factory.copy("mp3", tmp_path / "Private Person.mp3", tags={"title": "CLI Song", "comment": SECRET_COMMENT})

    def loist(data: str, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "loist", *args, "--json"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "LOIST_DATA_DIR": str(tmp_path / data)})
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    loist("prod", "ingest", str(song))
    exported = loist("prod", "export", "--anonymize", "--salt", "k", str(tmp_path / "e.jsonl"))
    assert exported == {"path": str(tmp_path / "e.jsonl"), "tracks": 1, "anonymized": True}
    text = (tmp_path / "e.jsonl").read_text()
    assert SECRET_COMMENT not in text and "Private Person" not in text and str(tmp_path) not in text
    first = loist("staging", "import", str(tmp_path / "e.jsonl"))
    assert (first["created"], first["regenerated"]) == (1, 1)
    second = loist("staging", "import", str(tmp_path / "e.jsonl"))
    assert (second["created"], second["existing"]) == (0, 1)
    shutil.rmtree(tmp_path / "prod")
