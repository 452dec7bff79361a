"""Turn CLI-style inputs (URLs, files, folders) into things to ingest.

A folder walk is deterministic (sorted), skips hidden entries and never follows a symlink loop,
and :func:`looks_like_audio` lets it report ``cover.jpg`` or ``notes.txt`` as skipped instead of
as failed ingests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from loist.errors import InvalidArgument, InvalidFormat, NotFound
from loist.ingest.sniff import HEAD_BYTES, sniff_file

InputKind = Literal["url", "file", "folder"]


def classify(value: str) -> InputKind:
    """Is this input a URL, a file or a folder? Raises NotFound when nothing is at that path
    (the same code the MCP ``file`` source gives), InvalidArgument for anything else unusable."""
    text = value.strip()
    if not text:
        raise InvalidArgument("empty input")
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return "url"
    if "://" in text:
        raise InvalidArgument(f"unsupported URL scheme {scheme!r}: only http and https can be fetched")
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    if path.exists():
        raise InvalidArgument(f"not a regular file or folder: {text}")
    raise NotFound(f"no such file or folder: {text}")


def walk_folder(root: Path, *, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every regular, non-hidden file under ``root``, recursively, in sorted order.

    Symlinked folders are followed once: a folder already visited (by its real path) is not entered
    again, so a symlink loop ends the walk instead of repeating it forever. The folders in ``skip``
    (the library's own data and blob folders) are never entered.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidArgument(f"not a folder: {root}")
    seen: set[tuple[int, int]] = set()
    for folder in skip:
        with contextlib.suppress(OSError):
            stat = folder.stat()
            seen.add((stat.st_dev, stat.st_ino))  # as if already visited
    yield from _walk(root, seen)


def _walk(folder: Path, seen: set[tuple[int, int]]) -> Iterator[Path]:
    try:
        stat = folder.stat()
    except OSError:
        return
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        with os.scandir(folder) as entries:
            items = sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return
    for entry in items:
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=True):
                yield from _walk(path, seen)
            elif entry.is_file(follow_symlinks=True):
                yield path
        except OSError:  # a broken symlink or a vanished file
            continue


def looks_like_audio(path: Path) -> bool:
    """Cheap check from the first bytes only (no tag parsing): is this worth ingesting?

    A file recognised as audio but broken (a truncated MP3) counts as audio, so a folder ingest
    reports it as failed rather than silently skipping it.
    """
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(HEAD_BYTES)
            if not head:
                return False
            sniff_file(handle, head)
    except InvalidFormat as exc:
        return "format" in exc.details
    except OSError:
        return False
    return True
