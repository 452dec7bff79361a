"""Download a URL to a file, safely.

What "safely" means here, and why each rule exists:

* Every hop (the first URL and each redirect) passes :func:`loist.ingest.netguard.check_url`,
  and the request goes to the address that was checked: the URL's host is replaced by that IP,
  the original name is sent as ``Host`` and used for TLS (SNI and certificate verification through
  httpcore's ``sni_hostname`` extension). A second DNS answer cannot redirect the connection.
* Redirects are followed by hand, at most ``max_redirects`` hops. The caller's headers (an
  ``Authorization`` for a signed link, say) go only to the origin the caller named; they are never
  sent to another scheme/host/port. No cookie is ever stored or replayed.
* The size limit holds twice: a ``Content-Length`` above it is refused before the body is read,
  and the bytes actually read are counted, so a server that lies is cut off one byte past the
  limit. Decoded bytes are what is counted, so a compressed bomb is cut off too.
* One total deadline covers resolution, connecting, redirects, retries and the body.
* Transient failures (connection errors, a broken body, 429/502/503/504) are retried with
  exponential backoff and jitter; a download makes at most 3 attempts in all, redirects included.
  Other 4xx/5xx answers are final.
* The body is streamed to disk in chunks and hashed on the way; the partial file is removed on
  any failure (including cancellation).
* Temporary space is budgeted across concurrent downloads (:mod:`loist.ingest.tempspace`): a
  download reserves its ``Content-Length`` before reading the body and then every byte it writes;
  :func:`download_to_temp` releases the reservation when the temporary file is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import random
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import anyio
import httpx

from loist.errors import FetchFailed, InvalidArgument, SizeExceeded, Timeout
from loist.ingest.netguard import AddressPolicy, Resolver, Target, check_url
from loist.ingest.tempspace import Reservation, TempBudget

Progress = Callable[..., Awaitable[None] | None]

MAX_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PROGRESS_EVERY_BYTES = 256 * 1024
CHUNK_BYTES = 64 * 1024

# Headers a caller may not set: they describe the connection or the body, or would let a caller
# impersonate another host. Host is refused outright (a clear error); the others too, since a
# silently dropped header hides a mistake.
FORBIDDEN_HEADERS = frozenset(
    {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
        "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade", "expect", "cookie2",
        "accept-encoding", "range",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True)
class Downloaded:
    """What was downloaded: where it is and what the server said about it."""

    path: Path
    size: int
    sha256: str
    content_type: str | None
    final_url: str
    filename: str | None


@dataclass
class _Attempts:
    """Transient failures so far in one download: the retry budget is shared by all redirect hops,
    so a download makes at most MAX_ATTEMPTS - 1 retries in total."""

    failed: int = 0


class _Transient(Exception):
    """A failure worth another attempt (connection trouble, 429/502/503/504)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def clean_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Validate caller headers; refuse Host and other hop-by-hop or framing headers."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str) or not _TOKEN.match(name):
            raise InvalidArgument(f"invalid header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise InvalidArgument(f"header {name!r} contains a line break")
        if name.lower() in FORBIDDEN_HEADERS or name.lower().startswith("proxy-"):
            raise InvalidArgument(f"header {name!r} cannot be set by the caller")
        out[name] = value
    return out


def filename_from(content_disposition: str | None, url: str) -> str | None:
    """The file name a server suggests, else the last segment of the URL path; never a path."""
    name: str | None = None
    if content_disposition:
        msg = Message()
        msg["content-disposition"] = content_disposition
        try:
            name = msg.get_filename()
        except (ValueError, LookupError):  # a malformed RFC 2231 value
            name = None
    if not name:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().strip(".")
    return name[:255] or None


def _origin(target: Target) -> tuple[str, str, int]:
    return target.origin


def _ip_url(target: Target) -> httpx.URL:
    host = str(target.ip)
    return httpx.URL(target.url).copy_with(scheme=target.scheme, host=host, port=target.port)


async def _report(progress: Progress | None, done: int, total: int | None) -> None:
    if progress is None:
        return
    result = progress("fetching", done, total)
    if inspect.isawaitable(result):
        await result


def _backoff(attempt: int, base_s: float) -> float:
    return base_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter, not crypto


async def download(
    url: str,
    dest: Path,
    *,
    headers: Mapping[str, str] | None = None,
    max_bytes: int,
    timeout_s: float,
    policy: AddressPolicy,
    max_redirects: int = 5,
    progress: Progress | None = None,
    resolver: Resolver | None = None,
    backoff_s: float = 0.25,
    ssl_context: ssl.SSLContext | None = None,
    reservation: Reservation | None = None,
) -> Downloaded:
    """Fetch ``url`` into ``dest`` (its parent must exist) under the rules in the module docstring.

    ``ssl_context`` replaces the default trust store (tests use one trusting a throwaway CA);
    certificates are always verified, against the URL's host name, never against the IP.
    ``reservation``: the temp-space budget this download counts against; on success it holds the
    file's size (the caller releases it when the file is gone), on failure nothing.

    Raises FetchFailed, SizeExceeded, Timeout, UrlNotAllowed, RateLimited (no temp space left) or
    InvalidArgument; on any failure ``dest`` does not exist afterwards.
    """
    if max_bytes <= 0 or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise InvalidArgument("max_bytes and timeout_s must be positive")
    sent_headers = clean_headers(headers)
    dest = Path(dest)
    ok = False
    try:
        with anyio.fail_after(timeout_s):
            result = await _download(
                url, dest, sent_headers, max_bytes, policy, max_redirects, progress, resolver, backoff_s,
                timeout_s, ssl_context, reservation,
            )
        ok = True
        if reservation is not None:
            reservation.hold(result.size)
        return result
    except TimeoutError:
        raise Timeout(f"download did not finish within {timeout_s:g} s", details={"url": url}) from None
    finally:
        if not ok:
            dest.unlink(missing_ok=True)
            if reservation is not None:
                reservation.release()


DOWNLOAD_TEMP_PREFIX = "loist-dl-"  # the temp folder of a download is named so (loist fsck finds leftovers)


@contextlib.asynccontextmanager
async def download_to_temp(url: str, *, budget: TempBudget | None = None, **options: Any) -> AsyncIterator[Downloaded]:
    """:func:`download` into a new temporary folder, for the length of the ``async with`` block.

    When the block ends, however it ends (an error, a cancellation), the folder is removed and then
    the file's share of ``budget`` is released. ``options`` are :func:`download`'s.
    """
    with contextlib.ExitStack() as stack:
        reservation = stack.enter_context(budget.reservation()) if budget is not None else None
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=DOWNLOAD_TEMP_PREFIX)))
        yield await download(url, folder / "download", reservation=reservation, **options)


async def _download(
    url: str,
    dest: Path,
    caller_headers: dict[str, str],
    max_bytes: int,
    policy: AddressPolicy,
    max_redirects: int,
    progress: Progress | None,
    resolver: Resolver | None,
    backoff_s: float,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None,
    reservation: Reservation | None,
) -> Downloaded:
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment would defeat connecting to the checked IP
        timeout=timeout_s,  # per operation; the one total deadline is the caller's fail_after
        cookies=no_cookies,
        verify=ssl_context if ssl_context is not None else True,
        headers={"User-Agent": "loist/0.1 (+music library ingest)", "Accept-Encoding": "identity"},
    ) as client:
        current = url
        attempts = _Attempts()
        first_origin: tuple[str, str, int] | None = None
        for hop in range(max_redirects + 1):
            target = await check_url(current, policy, resolver=resolver)
            if first_origin is None:
                first_origin = _origin(target)
            same_origin = _origin(target) == first_origin
            outcome = await _fetch_with_retries(
                client, target, caller_headers if same_origin else {}, dest, max_bytes, progress, backoff_s,
                attempts, reservation,
            )
            if isinstance(outcome, Downloaded):
                return outcome
            current = outcome  # a redirect target
            if hop == max_redirects:
                break
        raise FetchFailed(f"too many redirects (more than {max_redirects})", details={"url": url})
    raise AssertionError("unreachable")  # pragma: no cover


async def _fetch_with_retries(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    dest: Path,
    max_bytes: int,
    progress: Progress | None,
    backoff_s: float,
    attempts: _Attempts,
    reservation: Reservation | None,
) -> Downloaded | str:
    while True:
        try:
            return await _fetch_once(client, target, headers, dest, max_bytes, progress, reservation)
        except _Transient as exc:
            dest.unlink(missing_ok=True)
            if reservation is not None:
                reservation.release()  # the partial file is gone; the next attempt reserves again
            attempts.failed += 1
            if attempts.failed >= MAX_ATTEMPTS:
                details: dict[str, Any] = {"url": target.url, "attempts": attempts.failed}
                if exc.status is not None:
                    details["status"] = exc.status
                raise FetchFailed(f"{exc} (gave up after {attempts.failed} attempts)", details=details) from None
            await anyio.sleep(_backoff(attempts.failed, backoff_s))


async def _fetch_once(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    dest: Path,
    max_bytes: int,
    progress: Progress | None,
    reservation: Reservation | None,
) -> Downloaded | str:
    request = client.build_request(
        "GET",
        _ip_url(target),
        headers={**headers, "Host": target.host_header},
        extensions={"sni_hostname": target.host},
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TransportError as exc:
        raise _Transient(f"could not connect to {target.host}: {exc.__class__.__name__}: {exc}") from None
    try:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise FetchFailed(f"HTTP {status} redirect without a Location", details={"status": status})
            return urljoin(target.url, location.strip())
        if status in RETRY_STATUSES:
            raise _Transient(f"HTTP {status} from {target.host}", status=status)
        if not 200 <= status < 300:
            raise FetchFailed(
                f"HTTP {status} from {target.host}", details={"status": status, "url": target.url}
            )
        total = _content_length(response)
        if total is not None and total > max_bytes:
            raise SizeExceeded(
                f"the file is {total} bytes, over the {max_bytes}-byte limit",
                details={"size": total, "max_bytes": max_bytes},
            )
        if reservation is not None and total:
            reservation.ensure(total)  # all of it before a byte of the body is read
        digest = hashlib.sha256()
        done = 0
        reported = 0
        await _report(progress, 0, total)
        try:
            with dest.open("wb") as out:
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    done += len(chunk)
                    if done > max_bytes:
                        raise SizeExceeded(
                            f"the download passed the {max_bytes}-byte limit",
                            details={"max_bytes": max_bytes},
                        )
                    if reservation is not None:
                        reservation.ensure(done)  # beyond the announced length, or no length at all
                    digest.update(chunk)
                    out.write(chunk)
                    if done - reported >= PROGRESS_EVERY_BYTES:
                        reported = done
                        await _report(progress, done, total)
        except httpx.TransportError as exc:
            raise _Transient(f"connection broke while reading from {target.host}: {exc}") from None
        except httpx.DecodingError as exc:
            raise FetchFailed(f"could not decode the response body: {exc}") from None
        if done != reported:
            await _report(progress, done, total)
        return Downloaded(
            path=dest,
            size=done,
            sha256=digest.hexdigest(),
            content_type=response.headers.get("content-type"),
            final_url=target.url,
            filename=filename_from(response.headers.get("content-disposition"), target.url),
        )
    finally:
        await response.aclose()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    try:
        length = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return length if length >= 0 else None
