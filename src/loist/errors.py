"""One error hierarchy with stable codes.

Every failure a caller can see is a :class:`LoistError` carrying a stable ``code``. Each edge maps
it exactly once: the MCP server to an ``isError`` tool result, the web app to an HTTP status with a
JSON body, the CLI to an exit code. Messages are written for a person to act on; they never carry a
stack trace or a secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    FETCH_FAILED = "FETCH_FAILED"
    SIZE_EXCEEDED = "SIZE_EXCEEDED"
    INVALID_FORMAT = "INVALID_FORMAT"
    TIMEOUT = "TIMEOUT"
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"
    NOT_FOUND = "NOT_FOUND"
    STORAGE_FAILED = "STORAGE_FAILED"
    DATABASE_FAILED = "DATABASE_FAILED"
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHORIZED = "UNAUTHORIZED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    CONFIG_INVALID = "CONFIG_INVALID"
    NOT_READY = "NOT_READY"
    INTERRUPTED = "INTERRUPTED"
    OVERLOADED = "OVERLOADED"
    INTERNAL = "INTERNAL"


# The one table that maps a code to each edge: HTTP status and CLI exit code.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.FETCH_FAILED: 502,
    ErrorCode.SIZE_EXCEEDED: 413,
    ErrorCode.INVALID_FORMAT: 415,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.URL_NOT_ALLOWED: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.STORAGE_FAILED: 503,
    ErrorCode.DATABASE_FAILED: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.CONFIG_INVALID: 500,
    ErrorCode.NOT_READY: 503,
    ErrorCode.INTERRUPTED: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.INTERNAL: 500,
}

EXIT_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 2,
    ErrorCode.NOT_FOUND: 3,
    ErrorCode.CONFIG_INVALID: 4,
    ErrorCode.FETCH_FAILED: 10,
    ErrorCode.TIMEOUT: 11,
    ErrorCode.URL_NOT_ALLOWED: 12,
    ErrorCode.SIZE_EXCEEDED: 13,
    ErrorCode.INVALID_FORMAT: 14,
    ErrorCode.STORAGE_FAILED: 20,
    ErrorCode.DATABASE_FAILED: 21,
    ErrorCode.RATE_LIMITED: 30,
    ErrorCode.UNAUTHORIZED: 31,
    ErrorCode.NOT_READY: 32,
    ErrorCode.OVERLOADED: 33,
    ErrorCode.INTERRUPTED: 130,  # 128 + SIGINT, the shell's convention; SIGTERM ends `loist ingest` with 143
    ErrorCode.INTERNAL: 70,
}


# Failures of the deployment itself. Their messages can name it (a database URL with user, host and
# port; a bucket; a folder), so a public edge (the web routes, MCP over HTTP) answers with these
# words instead and logs the real message. Every other code's message is about the caller's request
# or source (a bad argument, a URL that failed) and is shown as it is.
PUBLIC_MESSAGE: dict[ErrorCode, str] = {
    ErrorCode.DATABASE_FAILED: "the music catalog is unavailable right now; try again later",
    ErrorCode.STORAGE_FAILED: "the audio storage is unavailable right now; try again later",
    ErrorCode.NOT_READY: "the server is starting or stopping; try again shortly",
    ErrorCode.INTERRUPTED: "the server stopped this work before it finished; try again",
    ErrorCode.CONFIG_INVALID: "internal server error",
    ErrorCode.INTERNAL: "internal server error",
}


def public_message(exc: LoistError) -> str:
    """What a caller outside this deployment may read of ``exc`` (see :data:`PUBLIC_MESSAGE`)."""
    return PUBLIC_MESSAGE.get(exc.code, exc.message)


class LoistError(Exception):
    """Base of every error a caller can see."""

    code: ErrorCode = ErrorCode.INVALID_ARGUMENT
    retryable: bool = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def exit_code(self) -> int:
        return EXIT_CODE[self.code]

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class FetchFailed(LoistError):
    code = ErrorCode.FETCH_FAILED
    retryable = True


class SizeExceeded(LoistError):
    code = ErrorCode.SIZE_EXCEEDED


class InvalidFormat(LoistError):
    code = ErrorCode.INVALID_FORMAT


class Timeout(LoistError):
    code = ErrorCode.TIMEOUT
    retryable = True


class UrlNotAllowed(LoistError):
    code = ErrorCode.URL_NOT_ALLOWED


class NotFound(LoistError):
    code = ErrorCode.NOT_FOUND


class StorageFailed(LoistError):
    code = ErrorCode.STORAGE_FAILED


class DatabaseFailed(LoistError):
    code = ErrorCode.DATABASE_FAILED


class RateLimited(LoistError):
    code = ErrorCode.RATE_LIMITED


class Unauthorized(LoistError):
    code = ErrorCode.UNAUTHORIZED


class InvalidArgument(LoistError):
    code = ErrorCode.INVALID_ARGUMENT


class ConfigInvalid(LoistError):
    code = ErrorCode.CONFIG_INVALID


class NotReady(LoistError):
    """The server is starting or stopping."""

    code = ErrorCode.NOT_READY
    retryable = True


class Interrupted(LoistError):
    """The work was stopped before this item was done (SIGINT or SIGTERM during a bulk ingest)."""

    code = ErrorCode.INTERRUPTED
    retryable = True


class Overloaded(LoistError):
    """The server is at capacity for this kind of work (admission control); retry later."""

    code = ErrorCode.OVERLOADED
    retryable = True


class Internal(LoistError):
    """An unexpected failure: the edge reports this code and logs the traceback server-side."""

    code = ErrorCode.INTERNAL


def error_for_code(code: str | ErrorCode, message: str) -> LoistError:
    """Rebuild an error from its stable code (e.g. one recorded on a FAILED track or sent by a worker)."""
    code = ErrorCode(code)
    for cls in (
        FetchFailed, SizeExceeded, InvalidFormat, Timeout, UrlNotAllowed, NotFound, StorageFailed,
        DatabaseFailed, RateLimited, Unauthorized, InvalidArgument, ConfigInvalid, NotReady,
        Interrupted, Overloaded, Internal,
    ):
        if cls.code == code:
            return cls(message)
    return LoistError(message)  # pragma: no cover - every code has a class
