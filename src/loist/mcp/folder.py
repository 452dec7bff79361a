"""The ``ingest_folder`` tool: every audio file in a folder on the server's machine, in one call.

Over stdio the server runs on the user's own machine, so "add my Demos folder" is a natural request;
``process_audio_complete`` answers one track (its ``file`` source refuses a folder and names this
tool). This runs the same bulk ingest as ``loist ingest FOLDER`` (:meth:`Library.ingest_many`: a
sorted, recursive walk, non-audio files skipped, files analysed in parallel) and reports each file.
A folder can hold thousands of files, so the answer counts every file but lists at most
:data:`MAX_ITEMS` of them, and a progress notification follows each file (clients that reset their
timeout on progress keep waiting while it runs). Over HTTP it is refused: the path would name a
folder on the server, not on the caller's machine.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from loist.errors import InvalidArgument, NotFound
from loist.library.filerun import IngestOutcome
from loist.mcp.deps import Deps
from loist.mcp.results import ok

MAX_ITEMS = 200  # files listed in one answer (the counts cover them all)

FileStatus = Literal["CREATED", "EXISTING", "FAILED", "SKIPPED", "INTERRUPTED"]


class FolderFile(BaseModel):
    path: str
    status: FileStatus
    id: uuid.UUID | None = Field(default=None, description="The track, when one was created or found.")
    title: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class FolderIngestResult(BaseModel):
    folder: str
    created: int
    existing: int
    failed: int
    skipped: int = Field(description="Files that are not audio (cover.jpg, notes.txt).")
    files: list[FolderFile] = Field(description=f"Each file in walk order; at most {MAX_ITEMS} (see truncated).")
    truncated: bool = Field(description="True when the folder had more files than are listed.")
    processing_time_ms: float


def _file(outcome: IngestOutcome) -> FolderFile:
    if outcome.skipped:
        return FolderFile(path=outcome.input, status="SKIPPED")
    if outcome.error is not None:
        status: FileStatus = "INTERRUPTED" if outcome.interrupted else "FAILED"
        return FolderFile(path=outcome.input, status=status, error_code=str(outcome.error.code),
                          error_message=outcome.error.message)
    track = outcome.track
    assert track is not None
    title = track.tags.title or track.source.original_filename
    return FolderFile(path=outcome.input, status="CREATED" if outcome.created else "EXISTING", id=track.id, title=title)


def register_folder_tool(server: MCPServer, deps: Deps) -> None:
    @server.tool(
        title="Add a folder of audio",
        annotations=ToolAnnotations(
            title="Add a folder of audio",
            readOnlyHint=False,
            destructiveHint=False,
            idempotentHint=True,  # content-addressed: files already in the library are found, not added twice
            openWorldHint=False,
        ),
    )
    async def ingest_folder(
        path: Annotated[str, Field(min_length=1, max_length=4096, description="A folder on this machine.")],
        ctx: Context,
    ) -> Annotated[CallToolResult, FolderIngestResult]:
        """Add every audio file in a folder (recursively; other files are skipped), as `loist ingest FOLDER`
        does. Only over stdio, where the server runs on your own machine. Returns counts and each file's
        outcome (at most 200 listed)."""
        if deps.transport != "stdio":
            raise InvalidArgument(
                "folders are only accepted when the server runs over stdio on your own machine; over HTTP, "
                "give each file as an http_url to process_audio_complete"
            )
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise NotFound(f"no such folder: {path}", details={"path": path})
        started = time.perf_counter()
        counts = {"CREATED": 0, "EXISTING": 0, "FAILED": 0, "SKIPPED": 0, "INTERRUPTED": 0}
        files: list[FolderFile] = []
        planned: list[int] = [0]
        async for outcome in deps.library.ingest_many([str(folder)], on_planned=lambda n: planned.__setitem__(0, n)):
            item = _file(outcome)
            counts[item.status] += 1
            if len(files) < MAX_ITEMS:
                files.append(item)
            done = sum(counts.values())
            await ctx.report_progress(done, max(planned[0], done), f"{done} of {max(planned[0], done)} files")
        result = FolderIngestResult(
            folder=str(folder), created=counts["CREATED"], existing=counts["EXISTING"],
            failed=counts["FAILED"] + counts["INTERRUPTED"], skipped=counts["SKIPPED"], files=files,
            truncated=sum(counts.values()) > len(files),
            processing_time_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return ok(result)
