"""How a ``loist`` command runs, written once: load the settings, open the library, run one async
call, close the library, and turn a :class:`~loist.errors.LoistError` into its exit code.

:func:`on_library` is that whole ritual; :func:`settings`, :func:`run` and :func:`guarded` are its
steps, for the commands that need only some of them (``serve``, ``db``, ``smoke``). Exit codes
come from :data:`loist.errors.EXIT_CODE`; the two that are not errors are named here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from loist.cli import render
from loist.config import Settings, load_settings
from loist.errors import Internal, LoistError
from loist.library.datadir import legacy_hint

if TYPE_CHECKING:
    from loist.library.service import Library

T = TypeVar("T")

OK = 0
SOME_FAILED = 1  # the command ran, but an input, an import item or a smoke check failed


def guarded(as_json: bool, step: Callable[[], T]) -> T:
    """Run ``step``; a :class:`LoistError` is printed (text or JSON) and exits with its code.

    Anything else that escapes is a bug: it is reported as ``INTERNAL`` (exit 70) in one line, its
    traceback logged at DEBUG (``LOG_LEVEL=DEBUG``), never printed at the user.
    """
    try:
        return step()
    except LoistError as exc:
        render.error(exc, as_json)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        crash = unexpected(exc)
        render.error(crash, as_json)
        raise typer.Exit(crash.exit_code) from None


def unexpected(exc: BaseException) -> Internal:
    """The coded error for an exception no layer expected; its traceback goes to the DEBUG log."""
    logging.getLogger("loist.cli").debug("unexpected error", exc_info=exc)
    return Internal(
        f"unexpected {type(exc).__name__}: {exc} (run with LOG_LEVEL=DEBUG for the traceback, and please report it)"
    )


def settings(as_json: bool, **overrides: Any) -> Settings:
    """Load and validate the settings, and configure logging from them (LOG_LEVEL, LOG_FORMAT)."""
    from loist.logs import configure_logging

    loaded = guarded(as_json, lambda: load_settings(**overrides))
    configure_logging(loaded)
    if hint := legacy_hint(loaded):
        render.note(hint)
    return loaded


def run(as_json: bool, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one async call to completion, errors mapped."""
    return guarded(as_json, lambda: asyncio.run(call()))


def on_library(
    as_json: bool, call: Callable[[Library], Awaitable[T]], *, before_open: Callable[[], None] | None = None
) -> T:
    """Load the settings, open the library, run ``call`` on it and close it; errors mapped.
    ``before_open`` runs once the settings are valid, before the library opens."""
    loaded = settings(as_json)
    if before_open is not None:
        guarded(as_json, before_open)

    async def go() -> T:
        from loist.library.holder import LibraryHolder  # deferred: `loist --help` stays light

        async with LibraryHolder(name="the command's library").opened(loaded) as library:
            return await call(library)

    return run(as_json, go)


def finish(failed: int | bool) -> NoReturn:
    """End a command that processes many items: 1 when any failed, else 0."""
    raise typer.Exit(SOME_FAILED if failed else OK)
