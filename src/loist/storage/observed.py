"""Metrics and trace spans for every blob-store operation, whichever backend runs it.

:func:`observed` wraps a backend class's operations: each call is counted in
``loist_storage_operations_total{backend,op,outcome}`` (outcome ``ok`` or the error's stable code,
``NOT_FOUND`` for a missing key) and, while tracing is on, runs in a span ``storage.<op>``. An
operation a backend calls from inside another (``put_file`` reading back its ``stat``) is part of
the outer one, not counted again. Streaming operations (``iter_range``, ``list_keys``,
``leftovers``) are counted once, when the stream ends or fails, and get no span (their steps run
in different threads). With telemetry off, a call costs two global look-ups more.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from loist.telemetry import metrics, tracing

T = TypeVar("T")

OPS = (
    "put_file", "put_bytes", "sync", "stat", "exists", "read_range", "download_to", "delete",
    "signed_url", "ping", "remove_leftover",
)
STREAMS = ("iter_range", "list_keys", "leftovers")

_inside = threading.local()  # the operation this thread is running now, if any


def observed(cls: type[T]) -> type[T]:
    """Class decorator for a :class:`~loist.storage.base.BlobStore` backend."""
    for op in OPS:
        setattr(cls, op, _operation(getattr(cls, op), op))
    for op in STREAMS:
        setattr(cls, op, _stream(getattr(cls, op), op))
    return cls


def _off() -> bool:
    return metrics.active() is None and not tracing.active()


def _operation(fn: Callable[..., Any], op: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _off() or getattr(_inside, "op", None) is not None:
            return fn(self, *args, **kwargs)
        _inside.op = op
        try:
            if tracing.active():
                with tracing.span(f"storage.{op}", {"loist.storage.backend": self.name}):
                    result = fn(self, *args, **kwargs)
            else:  # the span's context manager alone costs more than the count
                result = fn(self, *args, **kwargs)
        except BaseException as exc:
            metrics.storage_op(self.name, op, metrics.outcome_of(exc))
            raise
        finally:
            _inside.op = None
        metrics.storage_op(self.name, op, metrics.OK)
        return result

    return call


def _stream(fn: Callable[..., Iterator[Any]], op: str) -> Callable[..., Iterator[Any]]:
    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if _off():
            return fn(self, *args, **kwargs)
        try:
            stream = fn(self, *args, **kwargs)  # may fail at once (a missing key)
        except BaseException as exc:
            metrics.storage_op(self.name, op, metrics.outcome_of(exc))
            raise
        return _counted(self.name, op, stream)

    return call


def _counted(backend: str, op: str, stream: Iterator[T]) -> Iterator[T]:
    try:
        yield from stream
    except GeneratorExit:  # the reader stopped early: what it read went well
        metrics.storage_op(backend, op, metrics.OK)
        raise
    except BaseException as exc:
        metrics.storage_op(backend, op, metrics.outcome_of(exc))
        raise
    metrics.storage_op(backend, op, metrics.OK)
