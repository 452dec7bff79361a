"""The library service: the one facade every entry point (MCP, web, CLI) calls.

It orchestrates the engines, which never call each other:
fetch -> sniff/analyse -> store blob -> write row. It owns the consistency rules: content is
unique by sha256, a failed ingest leaves no blob and at most a FAILED record, a blob is deleted only
when no row references it any more.

INTERFACE SKETCH (being implemented; signatures are the contract other layers code against):

    class Library:
        settings: Settings; catalog: Catalog; store: BlobStore
        @classmethod
        async def open(cls, settings) -> Library            # also `async with Library.open(s) as lib`
        async def close(self) -> None

        async def ingest_url(self, url, *, headers=None, filename=None, mime_type=None,
                             max_size_mb=None, progress=None) -> Track
        async def ingest_file(self, path, *, progress=None) -> Track
        async def ingest_many(self, inputs: list[str], *, concurrency=None) -> AsyncIterator[IngestOutcome]
        async def get(self, track_id) -> Track                   # NotFound
        async def list(self, *, cursor=None, limit=50, status=None) -> TrackPage
        async def update_tags(self, track_id, fields: dict) -> Track   # InvalidArgument, NotFound
        async def delete(self, track_id) -> Track                # removes row, blob, thumbnail
        async def search(self, request: SearchRequest) -> SearchResult   (issue 4)
        async def stream(self, track_id) -> BlobInfo             # stat of the audio blob
        async def thumbnail(self, track_id) -> BlobInfo
        def iter_blob(self, key, start, end) -> Iterator[bytes]  # sync; run in a thread
        def signed_url(self, key) -> str | None                  # GCS only
        async def health(self) -> dict                           # {"database": ..., "storage": ...}
        def embed_url(self, track_id) -> str                     # {EMBED_BASE_URL}/embed/{id}
        def stream_url(self, track_id) -> str                    # {EMBED_BASE_URL}/audio/{id}/stream
        def thumbnail_url(self, track_id) -> str | None          # {EMBED_BASE_URL}/audio/{id}/thumbnail

    progress: Callable[[str, int | None, int | None], Awaitable[None] | None]
              called with (stage, done, total); stages: "fetching", "reading_tags", "storing",
              "cataloguing".
"""
