"""SQLAlchemy's asyncio engine without its ORM, for processes that never use a session.

``sqlalchemy.ext.asyncio``'s ``__init__`` imports the async ``Session`` and with it the whole ORM
(mappers, loading strategies): about 50 ms of every ``loist`` command on a quiet machine, a tenth
of a ``loist list``, for classes the catalog never uses (it is Core only). :func:`install`, called
by ``loist.catalog`` before anything imports SQLAlchemy's asyncio package, registers that package
with only its engine and result classes (the ``engine`` and ``result`` submodules, which import no
ORM) and does the one thing its ``__init__`` does besides (initialising the greenlet bridge). The
first lookup of any other name (``AsyncSession``, ``async_sessionmaker``...) runs the real
``__init__`` in the same module, so code that wants the ORM gets it, just not at start-up.
A package imported already (by a test, by another library) is left as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "sqlalchemy.ext.asyncio"
_ENGINE_NAMES = (
    "AsyncConnection",
    "AsyncEngine",
    "AsyncTransaction",
    "async_engine_from_config",
    "create_async_engine",
    "create_async_pool_from_url",
)
_RESULT_NAMES = ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult", "AsyncTupleResult")


def install() -> None:
    """Register the light package (see the module docstring); a no-op when it is imported already."""
    if PACKAGE in sys.modules:
        return
    import sqlalchemy.ext

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:  # pragma: no cover - SQLAlchemy always has it
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    installed = False

    def complete(name: str) -> Any:
        """Any name the light package lacks: run the real ``__init__`` (the ORM) once, then look again.
        Not while installing: ``from . import exc`` in its submodules must import the submodule."""
        if not installed or name.startswith("__"):
            raise AttributeError(name)
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = complete
    sys.modules[PACKAGE] = module
    try:
        engine = importlib.import_module(f"{PACKAGE}.engine")
        result = importlib.import_module(f"{PACKAGE}.result")
    except BaseException:  # pragma: no cover - leave the import system as it was
        del sys.modules[PACKAGE]
        raise
    sqlalchemy.ext.asyncio = module  # type: ignore[attr-defined]  # as a completed import binds it
    _copy(engine, module, _ENGINE_NAMES)
    _copy(result, module, _RESULT_NAMES)
    from sqlalchemy.util import concurrency

    concurrency._concurrency_shim._initialize()  # noqa: SLF001 - what the package's __init__ does
    installed = True


def _copy(source: ModuleType, target: ModuleType, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(target, name, getattr(source, name))
