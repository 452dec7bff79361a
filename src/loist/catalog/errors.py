"""Turning database URLs and driver failures into the catalog's errors, with no secret leaking."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from loist.config import mask_url, normalize_database_url
from loist.errors import ConfigInvalid, DatabaseFailed

MAX_DETAIL = 300


def normalize_url(url: str | None) -> str:
    """The async SQLAlchemy URL for ``url``; :class:`ConfigInvalid` when there is none or it is bad."""
    if url is None or not str(url).strip():
        raise ConfigInvalid(
            "no database URL: set DATABASE_URL (or DB_HOST / DB_CONNECTION_NAME); "
            "refusing to run against an unnamed database"
        )
    try:
        return normalize_database_url(str(url))
    except ValueError as exc:
        raise ConfigInvalid(str(exc)) from None


def masked(url: str | URL) -> str:
    """A URL safe to show: password hidden."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return mask_url(url)


def database_failed(exc: BaseException, url: str | URL, *, action: str = "query") -> DatabaseFailed:
    """A :class:`DatabaseFailed` for a driver/SQLAlchemy failure; the message never holds a password."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        detail = f"{type(exc.orig).__name__}: {exc.orig}"
    elif isinstance(exc, SQLAlchemyError):
        detail = f"{type(exc).__name__}: {exc}"
    else:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    detail = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
    password = _password(url)
    if password:
        detail = detail.replace(password, "********")
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    return DatabaseFailed(
        f"database {action} failed on {masked(url)}: {detail}",
        details={"retryable": isinstance(exc, OSError | TimeoutError) or _is_disconnect(exc)},
    )


def _password(url: str | URL) -> str | None:
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL has no password we can find
        return None
    return parsed.password if isinstance(parsed.password, str) and parsed.password else None


def _is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
