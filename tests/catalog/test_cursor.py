"""The one cursor codec: listings and searches read each other's cursors as foreign, and every damaged
cursor is the same INVALID_ARGUMENT error on both."""

from __future__ import annotations

import base64

import pytest

from loist.catalog import Catalog
from loist.catalog.cursor import CURSOR_HELP, decode_cursor, encode_cursor, peek_cursor
from loist.errors import ErrorCode, InvalidArgument
from loist.model import SearchRequest, Tags
from tests.catalog.factories import make_track


def test_a_payload_round_trips_as_unpadded_url_safe_text() -> None:
    payload = {"k": ["Ærø — 東京", 3.5, None], "t": 7, "z": 1}
    text = encode_cursor(payload)
    assert "=" not in text and "+" not in text and "/" not in text
    assert decode_cursor(text) == payload
    assert peek_cursor(text) == payload


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "x", base64.urlsafe_b64encode(b"not json").decode(), base64.urlsafe_b64encode(b"[1, 2]").decode(),
     base64.urlsafe_b64encode(b'"text"').decode(), base64.urlsafe_b64encode(b"\xff\xfe").decode()],
)
def test_what_is_not_an_encoded_object_is_the_one_cursor_error(cursor: str) -> None:
    assert peek_cursor(cursor) is None
    with pytest.raises(InvalidArgument) as info:
        decode_cursor(cursor)
    assert (info.value.code, info.value.message) == (ErrorCode.INVALID_ARGUMENT, CURSOR_HELP)


async def test_a_listing_and_a_search_refuse_each_others_cursors_with_the_same_error(catalog: Catalog) -> None:
    await catalog.add_many([make_track(n, tags=Tags(title=f"Song {n}")) for n in range(3)])
    listing = await catalog.list_tracks(limit=1)
    found = await catalog.search(SearchRequest(query="song", limit=1))
    assert listing.next_cursor and found.next_cursor
    errors = []
    for attempt in (
        catalog.search(SearchRequest(query="song", limit=1, cursor=listing.next_cursor)),
        catalog.list_tracks(limit=1, cursor=found.next_cursor),
        catalog.search(SearchRequest(query="song", limit=1, cursor=found.next_cursor[:-2])),
        catalog.list_tracks(limit=1, cursor=listing.next_cursor[:-2]),
    ):
        with pytest.raises(InvalidArgument) as info:
            await attempt
        errors.append(info.value.message)
    assert errors == [CURSOR_HELP] * 4
    # and each reads its own
    assert (await catalog.list_tracks(limit=1, cursor=listing.next_cursor)).items
    assert (await catalog.search(SearchRequest(query="song", limit=1, cursor=found.next_cursor))).items
