"""A dead Cloud Storage fails fast: per-request timeouts, retry deadlines, the circuit breaker, 412.

"Dead" is real here: a loopback listener that accepts and never answers (the hung case,
``tests/support/blackhole.py``) or a port where nothing listens (refused). Attempts are counted
where they land (connections accepted by the blackhole, or the retry's own ``on_error`` hook), and
the bounds are logical: an attempt against a server that never answers lasts at least
``timeout_s``, so a call bounded by a deadline makes at most ``deadline / timeout + 1`` of them.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from google.api_core.retry import Retry
from google.cloud.storage.retry import DEFAULT_RETRY, _should_retry

from loist.errors import NotFound, StorageFailed
from loist.storage import audio_key, open_blob_store
from loist.storage.breaker import CircuitBreaker
from loist.storage.gcs import GcsBlobStore, GcsLimits
from tests.storage.conftest import make_settings
from tests.storage.test_gcs import record_requests
from tests.support.blackhole import Blackhole, client_for, refused_url

KEY = audio_key("ab" + "3" * 62, "mp3")
TIMEOUT_S = 0.2
# The client's default back-off sleeps up to 1 s before the first retry; a brisk one keeps these
# tests short. Same predicate as the default (what counts as retryable is the client's).
BRISK = Retry(predicate=_should_retry, initial=0.01, maximum=0.05)


def hung_store(hole: Blackhole, *, read_s: float, write_s: float, **kwargs: Any) -> GcsBlobStore:
    limits = GcsLimits(timeout_s=TIMEOUT_S, read_deadline_s=read_s, write_deadline_s=write_s)
    return GcsBlobStore("dead-bucket", client=client_for(hole.url), retry=BRISK, limits=limits, **kwargs)


def most_attempts(deadline_s: float) -> int:
    """Retries start only before the deadline and each hung attempt lasts >= TIMEOUT_S."""
    return int(deadline_s / TIMEOUT_S) + 1


def test_defaults_are_seconds_not_minutes() -> None:
    settings = make_settings(storage_backend="gcs", gcs_bucket_name="b")
    store = open_blob_store(settings)
    assert isinstance(store, GcsBlobStore)
    limits = store.limits
    # The client's own defaults were a 60 s timeout per request and 120 s of retrying per call.
    assert limits.timeout_s + limits.read_deadline_s <= 10  # a stat / ranged read: a few seconds
    assert limits.timeout_s + limits.write_deadline_s <= 20  # an upload / delete: 10-20 s
    assert store.breaker is not None and store.breaker.threshold == settings.gcs_breaker_failures


def test_a_hung_service_fails_each_call_within_its_deadline(blackhole: Blackhole) -> None:
    store = hung_store(blackhole, read_s=0, write_s=0.6)

    with pytest.raises(StorageFailed) as caught:
        store.stat(KEY)  # a read with no retry budget: one attempt, cut by the request timeout
    assert caught.value.code == "STORAGE_FAILED"
    assert "dead-bucket" in caught.value.message and "stat" in caught.value.message
    assert blackhole.connections == 1

    for write in (lambda: store.put_bytes(KEY, b"x", "audio/mpeg"), lambda: store.delete(KEY)):
        before = blackhole.connections
        with pytest.raises(StorageFailed, match="retry deadline") as caught:
            write()
        attempts = blackhole.connections - before
        assert 2 <= attempts <= most_attempts(0.6), attempts  # retried, and only within the deadline
        assert caught.value.code == "STORAGE_FAILED"


def test_reads_retry_within_the_read_deadline(blackhole: Blackhole) -> None:
    store = hung_store(blackhole, read_s=0.6, write_s=0)
    with pytest.raises(StorageFailed, match="retry deadline"):
        store.stat(KEY)
    assert 2 <= blackhole.connections <= most_attempts(0.6)
    before = blackhole.connections
    with pytest.raises(StorageFailed):
        store.put_bytes(KEY, b"x", None)  # no write budget: exactly one attempt
    assert blackhole.connections - before == 1


def test_refused_connections_are_retried_until_the_deadline_then_fail() -> None:
    errors: list[Exception] = []
    retry = Retry(predicate=_should_retry, initial=0.01, maximum=0.05, on_error=errors.append)
    limits = GcsLimits(timeout_s=TIMEOUT_S, read_deadline_s=0.3, write_deadline_s=0.3)
    store = GcsBlobStore("dead-bucket", client=client_for(refused_url()), retry=retry, limits=limits)
    with pytest.raises(StorageFailed, match="retry deadline.*ConnectionError") as caught:
        store.stat(KEY)
    assert len(errors) >= 2 and all(isinstance(e, requests.ConnectionError) for e in errors)
    assert "Bearer" not in caught.value.message


def test_the_breaker_fails_calls_at_once_after_consecutive_failures(blackhole: Blackhole) -> None:
    breaker = CircuitBreaker(2, 600, name="Cloud Storage bucket 'dead-bucket'")
    store = hung_store(blackhole, read_s=0, write_s=0, breaker=breaker)
    for _ in range(2):
        with pytest.raises(StorageFailed, match="ReadTimeout|timed out"):
            store.stat(KEY)
    assert blackhole.connections == 2 and breaker.is_open
    for call in (lambda: store.stat(KEY), lambda: store.put_bytes(KEY, b"x", None), lambda: store.delete(KEY),
                 lambda: list(store.iter_range(KEY))):
        with pytest.raises(StorageFailed, match="unreachable: 2 calls in a row failed") as caught:
            call()
        assert caught.value.details["breaker"] == "open"
    assert blackhole.connections == 2  # nothing more reached the network
    with pytest.raises(StorageFailed):
        store.ping()  # the health probe is not gated: it reports what it finds
    assert blackhole.connections == 3


def test_an_answer_of_any_kind_keeps_the_breaker_closed(gcs_bucket: str) -> None:
    breaker = CircuitBreaker(1, 600, name="bucket")
    store = GcsBlobStore(gcs_bucket, retry=DEFAULT_RETRY, breaker=breaker)
    with pytest.raises(NotFound):
        store.stat(KEY)  # a 404 is the service answering
    store.delete(KEY)  # so is deleting a missing key
    missing = GcsBlobStore("no-such-bucket-for-the-breaker", breaker=breaker)
    with pytest.raises(StorageFailed, match="not found"):
        missing.put_bytes(KEY, b"x", None)
    assert not breaker.is_open and breaker.failures == 0


def test_uploads_create_only_and_a_412_means_already_there(gcs_bucket: str) -> None:
    store = GcsBlobStore(gcs_bucket)
    seen = record_requests(store)
    first = store.put_bytes(KEY, b"the bytes", "audio/mpeg")
    uploads = [r.request for r in seen if r.request.method == "POST" and "/upload/" in r.request.url]
    assert len(uploads) == 1 and "ifGenerationMatch=0" in uploads[0].url

    # MOCKED on the wire: the emulator ignores ifGenerationMatch, so the answer Cloud Storage gives
    # to a create-only upload of an existing object (412) is written into the response here.
    def precondition_failed(response: requests.Response, **_: Any) -> requests.Response:
        if response.request.method == "POST" and "/upload/" in (response.request.url or ""):
            response.status_code = 412
        return response

    store.client._http.hooks["response"].append(precondition_failed)
    seen.clear()
    again = store.put_bytes(KEY, b"the bytes", "audio/mpeg")
    assert [(r.request.method, r.status_code) for r in seen] == [("POST", 412), ("GET", 200)]  # then a stat
    assert again.etag == first.etag and again.size == len(b"the bytes")  # the existing object's


def test_breaker_state_machine() -> None:
    """The breaker alone, on a clock the test moves (no waiting)."""
    now = [0.0]
    breaker = CircuitBreaker(2, 30, name="the store", clock=lambda: now[0])
    breaker.enter()
    breaker.failed("refused")
    breaker.enter()  # one failure: still closed
    breaker.failed("refused")
    with pytest.raises(StorageFailed, match="the store is unreachable.*refused.*30 s more"):
        breaker.enter()
    now[0] = 29.0
    with pytest.raises(StorageFailed, match="1 s more"):
        breaker.enter()
    now[0] = 30.0
    breaker.enter()  # the trial goes through...
    with pytest.raises(StorageFailed):
        breaker.enter()  # ...alone
    breaker.failed("still refused")  # the trial failed: open again for a full cool-down
    now[0] = 59.0
    with pytest.raises(StorageFailed, match="still refused"):
        breaker.enter()
    now[0] = 60.0
    breaker.enter()
    breaker.released()  # an interrupted trial tells nothing: the next call is the trial
    breaker.enter()
    breaker.succeeded()
    assert not breaker.is_open and breaker.failures == 0
    breaker.enter()
    breaker.enter()  # closed: everyone goes
