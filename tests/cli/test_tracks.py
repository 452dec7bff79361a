"""``loist ingest``, ``show``, ``list``, ``search``, ``delete`` (``loist.cli.tracks``)."""

from __future__ import annotations

import json
from pathlib import Path

from loist.errors import EXIT_CODE, ErrorCode
from tests.cli.conftest import json_lines, run
from tests.support.audio import AudioFactory


def test_ingest_mixed_inputs_json_lines_and_exit_code(audio_factory: AudioFactory, tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    audio_factory.copy("mp3", folder / "a.mp3", tags={"title": "Alpha", "artist": "Band"})
    audio_factory.copy("flac", folder / "b.flac", tags={"title": "Beta"})
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not audio")
    single = audio_factory("ogg", tags={"title": "Gamma"})
    bad = audio_factory.bad("random")
    code, out, _ = run("ingest", "--json", str(folder), str(single), str(bad))
    rows = json_lines(out)
    assert code == 1  # one input failed
    by_input = {r["input"]: r for r in rows}
    assert by_input[str(bad)]["status"] == "FAILED"
    assert by_input[str(bad)]["error"]["code"] == "INVALID_FORMAT"
    assert by_input[str(folder / "cover.jpg")]["status"] == "SKIPPED"
    ok = [r for r in rows if r.get("status") == "COMPLETED"]
    assert sorted(r["track"]["tags"]["title"] for r in ok) == ["Alpha", "Beta", "Gamma"]
    assert all(r["created"] for r in ok)

    code, out, _ = run("ingest", "--json", str(folder))
    assert code == 0
    assert not any(r.get("created") for r in json_lines(out))


def test_ingest_text_mode_prints_a_summary(audio_factory: AudioFactory) -> None:
    code, out, err = run("ingest", str(audio_factory("mp3", tags={"title": "Solo", "artist": "Me"})))
    assert code == 0
    assert "Me - Solo" in out
    assert "1 processed: 1 added" in err


def test_show_list_search_delete_round_trip(audio_factory: AudioFactory) -> None:
    code, out, _ = run("ingest", "--json", str(audio_factory("m4a", tags={"title": "Round Trip", "artist": "CLI"})))
    track_id = json_lines(out)[0]["id"]

    code, out, _ = run("show", track_id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["tags"]["title"] == "Round Trip"
    assert shown["embed_url"].endswith(f"/embed/{track_id}")
    code, out, _ = run("show", track_id)
    assert "tags.title" in out and "Round Trip" in out

    code, out, _ = run("list", "--json")
    assert [t["id"] for t in json.loads(out)["items"]] == [track_id]

    code, out, _ = run("search", "round", "--json")
    assert code == 0
    assert [h["track"]["id"] for h in json.loads(out)["items"]] == [track_id]

    code, out, _ = run("delete", track_id, "--json", "--yes")
    assert code == 0 and json.loads(out) == {"deleted": track_id}
    code, out, _ = run("show", track_id, "--json")
    assert code == EXIT_CODE[ErrorCode.NOT_FOUND]
    assert json.loads(out)["error"]["code"] == "NOT_FOUND"


def test_list_pages_with_a_cursor_and_filters_failures(audio_factory: AudioFactory, tmp_path: Path) -> None:
    for i in range(3):
        audio_factory.copy("wav", tmp_path / f"w{i}.wav", tags={"title": f"W{i}"}, duration=1.0 + i / 10)
    run("ingest", str(tmp_path / "w0.wav"), str(tmp_path / "w1.wav"), str(tmp_path / "w2.wav"))
    run("ingest", str(audio_factory.bad("empty")))
    code, out, _ = run("list", "--json", "--limit", "2")
    page = json.loads(out)
    assert len(page["items"]) == 2 and page["next_cursor"]
    code, out, _ = run("list", "--json", "--limit", "2", "--cursor", page["next_cursor"])
    rest = json.loads(out)
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    code, out, _ = run("list", "--json", "--status", "FAILED")
    assert [t["error_code"] for t in json.loads(out)["items"]] == ["INVALID_FORMAT"]
    code, out, _ = run("list", "--json", "--cursor", "garbage!")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    code, _, _ = run("list", "--status", "sideways")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]


def test_search_accepts_any_string() -> None:
    run("seed", "--synthetic", "50")
    for query in ["rock'n'roll", "(", '"', "&|!", "x" * 10_000, "🎵", ""]:
        code, out, _ = run("search", query, "--json")
        assert code == 0, query
        assert "total" in json.loads(out)


def test_search_says_when_counting_stopped() -> None:
    run("seed", "--synthetic", "1005")
    code, out, err = run("search", "")
    assert code == 0
    assert "1,000+ match(es); more: --cursor " in err  # at least 1,000: counting stops there
    assert len(out.strip().splitlines()) >= 20  # 20 hits (a long title may wrap)
    code, out, err = run("search", "zzzzzz qqqqqq")
    assert "0 match(es)" in err and "+" not in err


def test_a_bad_search_option_names_the_option() -> None:
    code, out, _ = run("search", "x", "--sort", "loudness", "--json")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    message = json.loads(out)["error"]["message"]
    assert message.startswith("invalid search: --sort: ") and "relevance" in message
    assert "pydantic" not in message  # not the validation library's footer
    code, _, err = run("search", "x", "--order", "sideways")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT] and "--order" in err


def test_any_text_is_a_query_even_with_a_leading_dash() -> None:
    """`-format:mp3` and `hell -live` are queries (docs/search.md), not unknown options."""
    run("seed", "--synthetic", "60")
    code, out, err = run("search", "-format:mp3", "--json", "--limit", "100")
    assert code == 0, err
    formats = {hit["track"]["audio"]["format"] for hit in json.loads(out)["items"]}
    assert formats and "mp3" not in formats
    everything = json.loads(run("search", "--json")[1])["total"]
    live = json.loads(run("search", "live", "--json")[1])["total"]
    code, split, _ = run("search", "-live", "--json", "--limit", "100")
    code2, whole, _ = run("search", "--json", "--limit", "100", "--", "-live")  # after --, everything is the query
    assert code == code2 == 0
    assert 0 < live < everything and json.loads(split)["total"] == everything - live
    assert [h["track"]["id"] for h in json.loads(split)["items"]] == [h["track"]["id"] for h in json.loads(whole)["items"]]
    code, out, _ = run("search", "--limit", "2", "-format:mp3", "--json")  # options before, after and between words
    assert code == 0 and len(json.loads(out)["items"]) == 2


def test_show_prints_long_values_whole_on_a_narrow_pipe(audio_factory: AudioFactory, monkeypatch) -> None:  # noqa: ANN001
    """The runner's output is not a terminal and 80 columns wide: nothing may be cut with '…'."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("EMBED_BASE_URL", "https://music.a-rather-long-host-name.example.com/some/prefix")
    code, out, _ = run("ingest", "--json", str(audio_factory("flac", tags={"title": "T" * 120})))
    track = json_lines(out)[0]["track"]
    code, out, _ = run("show", track["id"])
    assert code == 0
    assert "…" not in out
    assert f"https://music.a-rather-long-host-name.example.com/some/prefix/embed/{track['id']}" in out
    assert track["sha256"] in out and track["blob_key"] in out and "T" * 120 in out


def test_list_shows_columns_and_says_where_an_empty_library_is(audio_factory: AudioFactory, embedded: Path) -> None:
    code, out, err = run("list")
    assert code == 0 and out == ""
    assert f"the library is empty at {embedded}" in err
    code, out, err = run("list", "--status", "FAILED")
    assert f"no FAILED tracks at {embedded}" in err
    tags = {"title": "Column Song", "artist": "The Columns", "album": "Tabular", "date": "1994"}
    run("ingest", str(audio_factory("ogg", tags=tags, duration=2.0)))
    code, out, _ = run("list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "ARTIST", "TITLE", "ALBUM", "YEAR", "DURATION", "FORMAT"]
    for value in ("The Columns", "Column Song", "Tabular", "1994", "0:02", "ogg"):
        assert value in row
    assert row.index("The Columns") == header.index("ARTIST") and row.index("ogg") == header.index("FORMAT")
    code, out, _ = run("list", "--json")
    assert json.loads(out)["items"][0]["tags"]["album"] == "Tabular"


def test_cursors_and_errors_are_never_hard_wrapped(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("COLUMNS", "40")
    run("seed", "--synthetic", "5")
    code, _, err = run("list", "--limit", "2")
    more = [line for line in err.splitlines() if line.startswith("more: ")]
    cursor = more[0].split("--cursor ", 1)[1]
    code, out, _ = run("list", "--json", "--limit", "2", "--cursor", cursor)
    assert code == 0 and len(json.loads(out)["items"]) == 2
    code, _, err = run("show", "not-an-id-but-a-rather-long-string-that-would-have-wrapped-at-forty-columns")
    assert code == EXIT_CODE[ErrorCode.NOT_FOUND]
    assert len(err.strip().splitlines()) == 1


def test_skipped_files_are_named_and_the_library_is_never_read_back(audio_factory: AudioFactory, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A folder that holds the library itself (LOIST_DATA_DIR inside it): its blobs are not ingested again."""
    music = tmp_path / "music"
    music.mkdir()
    monkeypatch.setenv("LOIST_DATA_DIR", str(music / "library"))
    audio_factory.copy("mp3", music / "song.mp3", tags={"title": "Only One"})
    (music / "notes.txt").write_text("lyrics")
    code, out, err = run("ingest", str(music))
    assert code == 0
    assert f"skipped {music / 'notes.txt'}: not audio" in err
    assert "1 processed: 1 added" in err and "1 skipped" in err
    code, out, err = run("ingest", "--json", str(music))  # the library's blobs now sit under music/library
    rows = json_lines(out)
    assert [r["input"] for r in rows] == [str(music / "notes.txt"), str(music / "song.mp3")]
    assert rows[0]["status"] == "SKIPPED" and rows[0]["reason"].startswith("not audio")
    assert rows[1]["created"] is False


def test_a_missing_file_is_not_found_as_over_mcp(tmp_path: Path) -> None:
    code, out, _ = run("ingest", "--json", str(tmp_path / "gone.mp3"))
    assert code == EXIT_CODE[ErrorCode.NOT_FOUND]
    assert json_lines(out)[0]["error"]["code"] == "NOT_FOUND"


def test_url_ingest_prints_no_http_client_log_lines(audio_factory: AudioFactory, http_server, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "true")  # the loopback server
    url = http_server.file("/tone.mp3", audio_factory("mp3", tags={"title": "Over HTTP"}).read_bytes())
    code, out, err = run("ingest", url)
    assert code == 0, err
    assert "Over HTTP" in out
    assert "HTTP Request" not in err and "httpx" not in err
