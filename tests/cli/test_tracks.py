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
