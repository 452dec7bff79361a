"""Downloads against a real loopback server: limits, redirects, headers, retries, timeouts, TLS."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from loist.errors import ErrorCode, FetchFailed, InvalidArgument, SizeExceeded, Timeout, UrlNotAllowed
from loist.ingest.fetch import download, filename_from
from loist.ingest.netguard import static_resolver
from tests.support.httpserver import LoopbackServer

DATA = bytes(range(256)) * 400  # 100 KiB
FAST = {"backoff_s": 0.001}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "download.part"


async def fetch(server: LoopbackServer, url: str, dest: Path, **kwargs: object):  # noqa: ANN201
    options: dict[str, object] = {
        "max_bytes": 10 * 1024 * 1024,
        "timeout_s": 10,
        "policy": server.policy,
        "resolver": server.resolver,
        **FAST,
    }
    options.update(kwargs)
    return await download(url, dest, **options)  # type: ignore[arg-type]


# --- the happy path ---------------------------------------------------------------------------


async def test_downloads_file_with_hash_type_and_name(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/music/My%20Song.mp3", DATA, content_type="audio/mpeg")
    got = await fetch(http_server, url, dest)
    assert got.path == dest
    assert dest.read_bytes() == DATA
    assert got.size == len(DATA)
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()
    assert got.content_type == "audio/mpeg"
    assert got.final_url == url
    assert got.filename == "My Song.mp3"
    # the connection went to the checked address, with the URL's host in the Host header
    assert http_server.requests[0].host == f"127.0.0.1:{http_server.port}"


async def test_filename_comes_from_content_disposition(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file(
        "/download", DATA, headers={"Content-Disposition": "attachment; filename*=UTF-8''B%C3%A9b%C3%A9.flac"}
    )
    got = await fetch(http_server, url, dest)
    assert got.filename == "Bébé.flac"


@pytest.mark.parametrize(
    ("disposition", "url", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "http://h/x", "passwd"),
        ('attachment; filename="a\\\\b.mp3"', "http://h/x", "b.mp3"),
        (None, "http://h/dir/track%201.ogg?sig=abc", "track 1.ogg"),
        (None, "http://h/", None),
        ("inline", "http://h/a.wav", "a.wav"),
    ],
)
def test_filename_is_never_a_path(disposition: str | None, url: str, expected: str | None) -> None:
    assert filename_from(disposition, url) == expected


async def test_download_without_content_length(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/nolength", DATA, content_length=False)
    got = await fetch(http_server, url, dest)
    assert got.size == len(DATA)
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()


async def test_progress_is_reported_and_throttled(http_server: LoopbackServer, dest: Path) -> None:
    data = b"\x01" * (3 * 1024 * 1024 + 5)
    url = http_server.file("/big", data)
    calls: list[tuple[str, int, int | None]] = []

    async def progress(stage: str, done: int, total: int | None) -> None:
        calls.append((stage, done, total))

    await fetch(http_server, url, dest, progress=progress)
    assert {c[0] for c in calls} == {"fetching"}
    assert calls[-1][1:] == (len(data), len(data))
    dones = [c[1] for c in calls]
    assert dones == sorted(dones)
    assert len(calls) <= len(data) // (256 * 1024) + 3  # at most one call per ~256 KB (+ start, end)


async def test_sync_progress_callback_works(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/sync", DATA, content_length=False)
    seen: list[int | None] = []
    await fetch(http_server, url, dest, progress=lambda stage, done, total: seen.append(total))
    assert seen and all(total is None for total in seen)


# --- size limits ------------------------------------------------------------------------------


async def test_content_length_over_limit_is_refused_before_reading(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/huge", DATA)
    calls: list[int] = []
    with pytest.raises(SizeExceeded) as info:
        await fetch(http_server, url, dest, max_bytes=1000, progress=lambda s, d, t: calls.append(d))
    assert info.value.code is ErrorCode.SIZE_EXCEEDED
    assert info.value.details["size"] == len(DATA)
    assert calls == []  # nothing was read
    assert not dest.exists()


async def test_body_over_limit_without_length_is_cut_off(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/stream", DATA, content_length=False)
    with pytest.raises(SizeExceeded):
        await fetch(http_server, url, dest, max_bytes=50_000)
    assert not dest.exists()


async def test_exactly_the_limit_is_allowed(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/exact", DATA, content_length=False)
    got = await fetch(http_server, url, dest, max_bytes=len(DATA))
    assert got.size == len(DATA)


async def test_server_announcing_less_than_it_sends_never_delivers_more(
    http_server: LoopbackServer, dest: Path
) -> None:
    url = http_server.file("/liar-short", DATA, content_length=1000)
    got = await fetch(http_server, url, dest, max_bytes=2000)
    assert got.size == 1000
    assert dest.stat().st_size == 1000


async def test_server_announcing_more_than_it_sends_fails(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/liar-long", DATA, content_length=len(DATA) * 2)
    with pytest.raises(FetchFailed):
        await fetch(http_server, url, dest)
    assert not dest.exists()
    assert len(http_server.requests_to("/liar-long")) == 3  # a broken body is transient: retried


# --- the one total timeout -----------------------------------------------------------------------


async def test_slow_drip_hits_the_total_timeout(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.drip("/drip")
    with pytest.raises(Timeout) as info:
        await fetch(http_server, url, dest, timeout_s=0.5)
    assert info.value.code is ErrorCode.TIMEOUT
    assert not dest.exists()


async def test_timeout_covers_retries(http_server: LoopbackServer, dest: Path) -> None:
    http_server.flaky("/always-503", DATA, failures=100)
    with pytest.raises(Timeout):
        await fetch(http_server, http_server.url("/always-503"), dest, timeout_s=0.3, backoff_s=10)


# --- redirects ---------------------------------------------------------------------------------


async def test_follows_five_redirects(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect_chain("/hop", 5, "/final.mp3")
    got = await fetch(http_server, url, dest)
    assert got.size == len(DATA)
    assert got.final_url == http_server.url("/final.mp3")
    assert got.filename == "final.mp3"


async def test_six_redirects_are_too_many(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect_chain("/hop", 6, "/final.mp3")
    with pytest.raises(FetchFailed, match="too many redirects"):
        await fetch(http_server, url, dest)
    assert http_server.requests_to("/final.mp3") == []
    assert not dest.exists()


async def test_redirect_loop_ends(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.redirect_loop("/a", "/b")
    with pytest.raises(FetchFailed, match="too many redirects"):
        await fetch(http_server, url, dest)
    assert len(http_server.requests) == 6  # the first request and 5 redirects, then it stops


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/final.mp3",
        "http://[::1]:{port}/final.mp3",
        "http://evil.test:{port}/final.mp3",
        "file:///etc/passwd",
        "ftp://127.0.0.1/final.mp3",
    ],
)
async def test_redirects_are_checked_at_every_hop(http_server: LoopbackServer, dest: Path, location: str) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect("/go", location.format(port=http_server.port))
    resolver = static_resolver({"evil.test": ["10.0.0.1"]})
    with pytest.raises(UrlNotAllowed):
        await fetch(http_server, url, dest, resolver=resolver)
    assert http_server.requests_to("/final.mp3") == []
    assert not dest.exists()


async def test_relative_redirects_resolve_against_the_current_url(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/files/x.mp3", DATA)
    url = http_server.redirect("/files/start", "x.mp3", code=301)
    got = await fetch(http_server, url, dest)
    assert got.final_url == http_server.url("/files/x.mp3")


# --- headers across hosts -------------------------------------------------------------------


async def test_caller_headers_are_not_forwarded_to_another_host(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect(
        "/signed", http_server.url("/final.mp3", host="localhost"), headers={"Set-Cookie": "session=abc; Path=/"}
    )
    headers = {"Authorization": "Bearer s3cret", "X-Api-Key": "k", "Cookie": "c=1"}
    got = await fetch(http_server, url, dest, headers=headers)
    assert got.size == len(DATA)
    first, second = http_server.requests
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["x-api-key"] == "k"
    assert second.host == f"localhost:{http_server.port}"
    assert "authorization" not in second.headers
    assert "x-api-key" not in second.headers
    assert "cookie" not in second.headers  # neither the caller's nor the one the first host set


async def test_caller_headers_follow_a_same_origin_redirect(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect("/start", "/final.mp3")
    await fetch(http_server, url, dest, headers={"Authorization": "Bearer s3cret"})
    assert [r.headers.get("authorization") for r in http_server.requests] == ["Bearer s3cret"] * 2


async def test_cookies_are_never_replayed(http_server: LoopbackServer, dest: Path) -> None:
    http_server.file("/final.mp3", DATA)
    url = http_server.redirect("/start", "/final.mp3", headers={"Set-Cookie": "session=abc; Path=/"})
    await fetch(http_server, url, dest)
    assert all("cookie" not in r.headers for r in http_server.requests)


@pytest.mark.parametrize("name", ["Host", "host", "Content-Length", "Transfer-Encoding", "Connection", "Bad Name"])
async def test_caller_cannot_set_host_or_framing_headers(http_server: LoopbackServer, dest: Path, name: str) -> None:
    url = http_server.file("/x", DATA)
    with pytest.raises(InvalidArgument):
        await fetch(http_server, url, dest, headers={name: "evil.example"})
    assert http_server.requests == []


async def test_header_values_cannot_inject_lines(http_server: LoopbackServer, dest: Path) -> None:
    url = http_server.file("/x", DATA)
    with pytest.raises(InvalidArgument):
        await fetch(http_server, url, dest, headers={"X-A": "1\r\nHost: evil"})


# --- retries -----------------------------------------------------------------------------------


async def test_transient_503_is_retried_then_succeeds(http_server: LoopbackServer, dest: Path) -> None:
    counter = http_server.flaky("/flaky", DATA, failures=2)
    got = await fetch(http_server, http_server.url("/flaky"), dest)
    assert got.size == len(DATA)
    assert counter.count == 3


@pytest.mark.parametrize("code", [429, 502, 503, 504])
async def test_retries_at_most_three_attempts(http_server: LoopbackServer, dest: Path, code: int) -> None:
    counter = http_server.flaky("/down", DATA, failures=100, code=code)
    with pytest.raises(FetchFailed) as info:
        await fetch(http_server, http_server.url("/down"), dest)
    assert counter.count == 3
    assert info.value.details["status"] == code
    assert not dest.exists()


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 500])
async def test_other_errors_are_not_retried(http_server: LoopbackServer, dest: Path, code: int) -> None:
    url = http_server.status("/err", code)
    with pytest.raises(FetchFailed) as info:
        await fetch(http_server, url, dest)
    assert info.value.details["status"] == code
    assert len(http_server.requests) == 1


async def test_connection_refused_is_fetch_failed(http_server: LoopbackServer, dest: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchFailed, match="could not connect"):
        await fetch(http_server, f"http://127.0.0.1:{port}/x.mp3", dest)
    assert not dest.exists()


# --- DNS is resolved once, and the checked address is used -----------------------------------


async def test_dns_rebinding_cannot_switch_the_address(http_server: LoopbackServer, dest: Path) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    url = http_server.file("/x.mp3", DATA)
    got = await fetch(http_server, url.replace("127.0.0.1", "rebind.test"), dest, resolver=rebinding)
    assert got.size == len(DATA)
    assert calls == ["rebind.test"]  # resolved once; the connection used that (checked) answer
    assert http_server.requests[0].host == f"rebind.test:{http_server.port}"


async def test_unresolvable_host_fails_closed(http_server: LoopbackServer, dest: Path) -> None:
    with pytest.raises(FetchFailed, match="could not resolve"):
        await fetch(http_server, "http://nowhere.test/x.mp3", dest)


async def test_invalid_limits_are_refused(http_server: LoopbackServer, dest: Path) -> None:
    with pytest.raises(InvalidArgument):
        await fetch(http_server, http_server.url("/x"), dest, max_bytes=0)


# --- https: the certificate is verified against the host name, not the IP ----------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loist test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loist.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("loist.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    seen_sni: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,return-value]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    client_ctx.seen_sni = seen_sni  # type: ignore[attr-defined]
    yield httpd.server_address[1], client_ctx
    httpd.shutdown()
    httpd.server_close()


async def test_https_verifies_the_certificate_for_the_host_name(
    tls_server: tuple[int, ssl.SSLContext], http_server: LoopbackServer, dest: Path
) -> None:
    port, ctx = tls_server
    resolver = static_resolver({"loist.test": ["127.0.0.1"]})
    got = await fetch(http_server, f"https://loist.test:{port}/a.mp3", dest, resolver=resolver, ssl_context=ctx)
    assert got.size == len(DATA)
    assert "loist.test" in ctx.seen_sni  # type: ignore[attr-defined]


async def test_https_with_a_certificate_for_another_name_fails(
    tls_server: tuple[int, ssl.SSLContext], http_server: LoopbackServer, dest: Path
) -> None:
    port, ctx = tls_server
    resolver = static_resolver({"wrong.test": ["127.0.0.1"]})
    with pytest.raises(FetchFailed):
        await fetch(http_server, f"https://wrong.test:{port}/a.mp3", dest, resolver=resolver, ssl_context=ctx)
    assert not dest.exists()


def test_policy_fixture_allows_only_loopback_v4(http_server: LoopbackServer) -> None:
    assert http_server.policy.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not http_server.policy.is_allowed(ipaddress.ip_address("10.0.0.1"))


async def test_slow_dns_counts_against_the_total_timeout(http_server: LoopbackServer, dest: Path) -> None:
    async def stuck(host: str, port: int) -> list[str]:
        await anyio.sleep(3600)  # a resolver that never answers
        return []

    with pytest.raises(Timeout):
        await fetch(http_server, "http://slow-dns.test/a.mp3", dest, resolver=stuck, timeout_s=0.2)


async def test_cancellation_removes_the_partial_file(http_server: LoopbackServer, dest: Path) -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(b"\x00" * (300 * 1024))  # enough for one progress report, then silence
        h.wfile.flush()
        time.sleep(5)

    url = http_server.route("/stall", handler)
    seen: list[int] = []
    async with anyio.create_task_group() as tg:

        async def progress(stage: str, done: int, total: int | None) -> None:
            if done > 0:
                seen.append(done)
                assert dest.exists()  # mid-download: the partial file is there
                tg.cancel_scope.cancel()

        tg.start_soon(lambda: fetch(http_server, url, dest, progress=progress))
    assert seen
    assert not dest.exists()


async def test_the_retry_budget_is_shared_across_redirects(http_server: LoopbackServer, dest: Path) -> None:
    # /one fails twice, then redirects to /two, which always fails: 2 + 1 attempts, not 2 + 3
    calls = {"n": 0}

    def one(h: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        h.send_response(503 if calls["n"] <= 2 else 302)
        if calls["n"] > 2:
            h.send_header("Location", "/two")
        h.send_header("Content-Length", "0")
        h.end_headers()

    http_server.route("/one", one)
    two = http_server.flaky("/two", DATA, failures=100)
    with pytest.raises(FetchFailed) as info:
        await fetch(http_server, http_server.url("/one"), dest)
    assert calls["n"] == 3
    assert two.count == 1
    assert info.value.details["attempts"] == 3
