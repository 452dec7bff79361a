"""``loist worker --once`` and ``loist jobs list|retry`` on the embedded library."""

from __future__ import annotations

import json

from tests.cli.conftest import run
from tests.support.audio import AudioFactory


def test_jobs_are_listed_run_by_a_drain_and_retried(audio_factory: AudioFactory) -> None:
    code, out, _ = run("ingest", "--json", str(audio_factory("aiff")))
    assert code == 0
    track_id = json.loads(out.splitlines()[0])["id"]
    code, out, _ = run("jobs", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["counts"]["queued"] == 2
    assert {job["kind"] for job in listed["items"]} == {"waveform", "rendition"}
    assert all(job["track_id"] == track_id for job in listed["items"])

    code, out, _ = run("worker", "--once", "--json")
    done = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(d["kind"] for d in done) == ["rendition", "waveform"]
    assert {d["state"] for d in done} == {"done"}

    code, out, _ = run("jobs", "list", "--state", "done")
    assert code == 0 and "done: 2" in out and "waveform" in out
    first = done[0]["job"]
    code, out, _ = run("jobs", "retry", str(first), "--json")
    assert code == 0 and json.loads(out) == {"queued": 1}


def test_retry_needs_ids_or_dead_and_list_a_known_state() -> None:
    code, _, err = run("jobs", "retry")
    assert code != 0 and "INVALID_ARGUMENT" in err
    code, out, _ = run("jobs", "list", "--state", "stuck", "--json")
    assert code != 0 and json.loads(out)["error"]["code"] == "INVALID_ARGUMENT"
