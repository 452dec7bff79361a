"""Blob lifetime: when a blob may be written, claimed by a row, and deleted.

:class:`Checkpoints` names the points of ingest and delete where the order of concurrent work
matters. The library reaches them and does nothing; a test replaces the object with one that
pauses or fails a task at a point, to force one interleaving deterministically.
"""

from __future__ import annotations


class Checkpoints:
    """Named points of ingest and delete (``looked_up``, ``stored``, ``claiming``, ``committed``,
    ``row_deleted``, ``refs_counted``, ``blobs_deleted``). The default does nothing."""

    async def reached(self, point: str) -> None:
        return None
