"""The library's own folders on this machine: the data folder (``LOIST_DATA_DIR``: the SQLite file)
and the local blob folder (``STORAGE_PATH``, default ``<LOIST_DATA_DIR>/blobs``).

Checked once, before anything is opened, so a folder that cannot be used (a file in the way, a
read-only disk, no permission) is a :class:`~loist.errors.ConfigInvalid` naming the setting and what
to do, never an ``OSError`` from deep inside SQLite or a ``mkdir``. ``loist config check`` reports
the same problems (:func:`folder_problems`) without creating anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from loist.config import Settings, mask_url
from loist.errors import ConfigInvalid

LEGACY_DATA_DIR = Path("data")  # the default before the per-user folder: ./data, relative to where a command ran


def library_folders(settings: Settings, *, blobs: bool = True) -> list[tuple[str, Path]]:
    """The folders this configuration writes on this machine, by the setting that names each
    (``blobs=False``: the catalog's only)."""
    folders: list[tuple[str, Path]] = []
    if settings.database_dialect == "sqlite":
        folders.append(("LOIST_DATA_DIR" if settings.database_url is None else "DATABASE_URL", _sqlite_folder(settings)))
    if blobs and settings.storage_backend == "local":
        folders.append(("STORAGE_PATH" if settings.storage_path is not None else "LOIST_DATA_DIR", settings.blob_dir))
    return folders


def _sqlite_folder(settings: Settings) -> Path:
    if settings.database_url is None:
        return settings.data_dir
    path = settings.sqlalchemy_url().split(":///", 1)[-1].split("?", 1)[0]
    return Path(path).parent if path and path != ":memory:" else settings.data_dir


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold the library (None when it can, or can be created), without creating it."""
    folder = folder.expanduser().absolute()
    probe = folder
    while not probe.exists():  # the nearest existing ancestor decides whether the rest can be made
        if probe.is_symlink():
            return f"{folder}: {probe} is a broken symbolic link"
        if probe.parent == probe:
            return f"{folder}: no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"{folder}: {probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "on a read-only file system" if _read_only(probe) else "not writable by this user"
        return f"{folder}: {probe} is {why}"
    return None


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def folder_problems(settings: Settings) -> list[str]:
    """Every library folder that cannot be used, as a sentence naming its setting and the fix."""
    found: dict[str, str] = {}  # one sentence per setting (the blob folder inside a bad data folder is the same problem)
    for setting, folder in library_folders(settings):
        problem = folder_problem(folder)
        if problem and setting not in found:
            found[setting] = f"{setting} cannot be used ({problem}): {_fix(setting)}"
    return list(found.values())


def _fix(setting: str) -> str:
    if setting == "LOIST_DATA_DIR":
        return "set LOIST_DATA_DIR to a folder you can write, or unset it for the per-user default"
    return f"set {setting} to a location you can write"


def prepare(settings: Settings, *, blobs: bool = True) -> None:
    """Create the library's folders, or raise :class:`ConfigInvalid` saying why they cannot be used."""
    for setting, folder in library_folders(settings, blobs=blobs):
        problem = folder_problem(folder)
        if problem is None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a race, a full disk, a permission the check could not see
                problem = f"{folder.absolute()}: {exc.strerror or exc}"
        if problem:
            raise ConfigInvalid(f"{setting} cannot be used ({problem}): {_fix(setting)}", details={"setting": setting})


def legacy_hint(settings: Settings, cwd: Path | None = None) -> str | None:
    """A line for the person when ``./data`` here holds a library from the old default and
    ``LOIST_DATA_DIR`` is unset: the commands no longer use it silently, so say where it is."""
    if "data_dir" in settings.model_fields_set or settings.database_dialect != "sqlite" or settings.database_url:
        return None
    old = (cwd or Path.cwd()) / LEGACY_DATA_DIR
    if not (old / "loist.db").is_file() or old.resolve() == settings.data_dir.resolve():
        return None
    return (
        f"hint: {old} holds a library (the old default folder); this command uses {settings.data_dir}. "
        f"Set LOIST_DATA_DIR={old} to keep using it, or move it there."
    )


def location(settings: Settings) -> str:
    """Where this library lives, for a person: its data folder, or its database (password masked)."""
    if settings.database_dialect == "sqlite" and settings.database_url is None:
        return str(settings.data_dir)
    return mask_url(settings.sqlalchemy_url())
