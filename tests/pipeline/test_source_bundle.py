"""fetch_bundle against a local HTTP(S) server on 127.0.0.1 serving archives made here."""

from __future__ import annotations

import datetime
import io
import ipaddress
import ssl
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shipyard.pipeline import source_bundle
from shipyard.pipeline.errors import Cancelled, SourceError, TimedOut
from shipyard.pipeline.source_bundle import PRIVATE_REFUSED, fetch_bundle, is_forbidden_address


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True
    delay_s: float = 0.0
    trickle_s: float = 0.0  # > 0: the body one byte at a time, this long apart
    stall: bool = False  # headers, then silence until the client gives up


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # without a length the body ends at close

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Host", "")))
                route = server.routes.get(self.path, Route(b"not found", status=404))
                time.sleep(route.delay_s)
                self.send_response(route.status)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.stall:
                    self.rfile.read(1)  # returns when the client closes
                    return
                if route.trickle_s <= 0:
                    self.wfile.write(route.body)
                    return
                try:
                    for i in range(len(route.body)):
                        self.wfile.write(route.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(route.trickle_s)
                except OSError:
                    return  # the client gave up, as it should

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


class Fetch:
    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.lines: list[str] = []

    def __call__(self, url: str, **kwargs: Any) -> Path:
        options: dict[str, Any] = {
            "max_bytes": 10 * 1024 * 1024,
            "timeout_s": 10.0,
            "allow_private": True,
            "cancel": threading.Event(),
        }
        options.update(kwargs)
        return fetch_bundle(url, self.dest, on_line=self.lines.append, **options)


@pytest.fixture
def fetch(tmp_path: Path) -> Fetch:
    return Fetch(tmp_path / "work" / "src")


# --- archives ------------------------------------------------------------------------------


def entry(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, type=tarfile.SYMTYPE, linkname=target)


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=buf, mode="w:gz") if gz else tarfile.open(fileobj=buf, mode="w") as tf
    ):
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def make_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, data, unix mode with file type) per entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


GITHUB_STYLE = [
    entry("app-main/", type=tarfile.DIRTYPE, mode=0o755),
    entry("app-main/Dockerfile", b"FROM scratch\n"),
    entry("app-main/src/run.sh", b"#!/bin/sh\n", mode=0o755),
    symlink("app-main/latest", "src/run.sh"),
]


# --- formats -------------------------------------------------------------------------------


def test_tar_with_single_top_level_directory_returns_it(server: Server, fetch: Fetch) -> None:
    server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    root = fetch(server.url("/app.tar"))
    assert root == fetch.dest / "app-main"
    assert (root / "Dockerfile").read_bytes() == b"FROM scratch\n"
    assert (root / "src/run.sh").stat().st_mode & 0o111
    assert (root / "latest").is_symlink()
    assert "Extracted 2 files" in fetch.lines
    assert any(line.startswith("Downloaded ") for line in fetch.lines)
    # The download itself is not left behind, inside or next to dest.
    assert sorted(p.name for p in fetch.dest.parent.iterdir()) == ["src"]


def test_format_is_detected_by_content_not_extension(server: Server, fetch: Fetch) -> None:
    body = make_tar([entry("Dockerfile", b"FROM scratch\n"), entry("a/b.txt", b"b")], gz=True)
    server.routes["/looks-like.zip"] = Route(body)
    root = fetch(server.url("/looks-like.zip"))
    assert root == fetch.dest  # two top-level entries
    assert (root / "a/b.txt").read_bytes() == b"b"


def test_zip(server: Server, fetch: Fetch) -> None:
    body = make_zip(
        [
            ("repo/", b"", stat.S_IFDIR | 0o755),
            ("repo/Dockerfile", b"FROM scratch\n", stat.S_IFREG | 0o644),
            ("repo/bin/tool", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
            ("__MACOSX/repo/._Dockerfile", b"junk", stat.S_IFREG | 0o644),
        ]
    )
    server.routes["/repo"] = Route(body)
    root = fetch(server.url("/repo"))
    assert root == fetch.dest / "repo"
    assert (root / "Dockerfile").read_bytes() == b"FROM scratch\n"
    assert (root / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert (root / "Dockerfile").stat().st_mode & 0o777 == 0o644


def test_not_an_archive(server: Server, fetch: Fetch) -> None:
    server.routes["/x.tar.gz"] = Route(b"<html>login page</html>")
    with pytest.raises(SourceError) as err:
        fetch(server.url("/x.tar.gz"))
    assert err.value.message == "bundle is not a tar, tar.gz or zip archive"


# --- HTTP ----------------------------------------------------------------------------------


def test_http_error_is_reported_with_its_status(server: Server, fetch: Fetch) -> None:
    with pytest.raises(SourceError) as err:
        fetch(server.url("/missing.tar"))
    assert err.value.message == "could not download bundle: HTTP 404"


def test_declared_length_over_the_limit(server: Server, fetch: Fetch) -> None:
    server.routes["/big"] = Route(b"x" * 5000)
    with pytest.raises(SourceError) as err:
        fetch(server.url("/big"), max_bytes=4096)
    assert err.value.message == "bundle is larger than 4096 bytes"


def test_undeclared_length_is_counted(server: Server, fetch: Fetch) -> None:
    server.routes["/big"] = Route(b"x" * 200_000, send_length=False)
    with pytest.raises(SourceError) as err:
        fetch(server.url("/big"), max_bytes=100_000)
    assert err.value.message == "bundle is larger than 100000 bytes"


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_compression_bomb_stops_at_the_limit(server: Server, fetch: Fetch, kind: str) -> None:
    zeros = bytes(20 * 1024 * 1024)
    if kind == "zip":
        body = make_zip([("zeros", zeros, stat.S_IFREG | 0o644)])
    else:
        body = make_tar([entry("zeros", zeros)], gz=True)
    assert len(body) < 1024 * 1024
    server.routes["/bomb"] = Route(body)
    with pytest.raises(SourceError) as err:
        fetch(server.url("/bomb"), max_bytes=1024 * 1024)
    assert err.value.message == "bundle is larger than 1048576 bytes when extracted"
    assert not any(fetch.dest.rglob("*"))


def test_redirects_are_followed(server: Server, fetch: Fetch) -> None:
    server.routes["/a"] = Route(status=302, headers={"Location": "/b"})
    server.routes["/b"] = Route(status=301, headers={"Location": server.url("/app.tar")})
    server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    assert fetch(server.url("/a")).name == "app-main"
    assert [path for path, _ in server.requests] == ["/a", "/b", "/app.tar"]


def test_too_many_redirects(server: Server, fetch: Fetch) -> None:
    server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with pytest.raises(SourceError, match="more than 5 redirects"):
        fetch(server.url("/loop"))
    assert len(server.requests) == 6


def test_redirect_to_another_scheme_is_refused(server: Server, fetch: Fetch) -> None:
    server.routes["/a"] = Route(status=302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(SourceError, match="only http and https"):
        fetch(server.url("/a"))


def test_loopback_is_refused_unless_allowed(server: Server, fetch: Fetch) -> None:
    server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(SourceError) as err:
            fetch(server.url("/app.tar", host=host), allow_private=False)
        assert err.value.message == PRIVATE_REFUSED
    assert server.requests == []  # refused before connecting


def test_redirect_to_a_private_address_is_refused(
    server: Server, fetch: Fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Treat the test server's loopback address as public, so only the redirect's target
    # (an RFC 1918 address) is private.
    real = source_bundle.is_forbidden_address
    monkeypatch.setattr(
        source_bundle, "is_forbidden_address", lambda ip: not ip.is_loopback and real(ip)
    )
    server.routes["/a"] = Route(status=302, headers={"Location": "http://10.1.2.3/secret"})
    with pytest.raises(SourceError) as err:
        fetch(server.url("/a"), allow_private=False)
    assert err.value.message == PRIVATE_REFUSED
    assert "Redirected to http://10.1.2.3/secret" in fetch.lines


def test_connection_goes_to_the_checked_address(
    server: Server, fetch: Fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by us; the request carries the name in Host."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[ipaddress.IPv4Address]:
        lookups.append(host)
        return [ipaddress.IPv4Address("127.0.0.1")]

    monkeypatch.setattr(source_bundle, "_resolve", resolve)
    server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    fetch(server.url("/app.tar", host="bundles.invalid"))
    assert lookups == ["bundles.invalid"]
    assert server.requests == [("/app.tar", f"bundles.invalid:{server.port}")]


def test_credentials_and_query_stay_out_of_the_log(server: Server, fetch: Fetch) -> None:
    server.routes["/app.tar?sig=s3cret"] = Route(make_tar(GITHUB_STYLE))
    url = server.url("/app.tar?sig=s3cret").replace("http://", "http://u:pw0rd@")
    fetch(url)
    assert not any("s3cret" in line or "pw0rd" in line for line in fetch.lines)


def test_cancel(server: Server, fetch: Fetch) -> None:
    server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        fetch(server.url("/app.tar"), cancel=cancel)


def test_timeout(server: Server, fetch: Fetch) -> None:
    server.routes["/slow"] = Route(make_tar(GITHUB_STYLE), delay_s=3)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        fetch(server.url("/slow"), timeout_s=0.5)
    assert time.monotonic() - started < 2.5


def test_trickle_cannot_outlast_the_deadline(server: Server, fetch: Fetch) -> None:
    # 1 byte every 0.5 s: every read succeeds, so read timeouts alone never fire.
    server.routes["/trickle"] = Route(make_tar(GITHUB_STYLE), trickle_s=0.5)
    started = time.monotonic()
    with pytest.raises(TimedOut) as raised:
        fetch(server.url("/trickle"), timeout_s=2.0)
    assert time.monotonic() - started < 3.0
    assert raised.value.message == "downloading the bundle timed out after 2 s"


@pytest.mark.parametrize("route", [Route(b"x" * 10_000, trickle_s=0.5), Route(b"x", stall=True)])
def test_abort_stops_a_trickle_or_a_stall_within_a_second(
    server: Server, fetch: Fetch, route: Route
) -> None:
    server.routes["/slow"] = route
    cancel = threading.Event()
    fired: list[float] = []

    def abort() -> None:
        fired.append(time.monotonic())
        cancel.set()

    threading.Timer(1.0, abort).start()
    with pytest.raises(Cancelled):
        fetch(server.url("/slow"), timeout_s=60.0, cancel=cancel)
    # Seen at the next check (every 0.25 s), whatever the server does meanwhile.
    assert time.monotonic() - fired[0] < 1.0


def test_slow_but_steady_download_within_the_deadline_succeeds(
    server: Server, fetch: Fetch
) -> None:
    body = make_tar(GITHUB_STYLE, gz=True)  # a few hundred bytes, one read each
    server.routes["/steady"] = Route(body, trickle_s=0.002)
    root = fetch(server.url("/steady"), timeout_s=30.0)
    assert (root / "Dockerfile").read_bytes() == b"FROM scratch\n"


# --- HTTPS with a pinned address -----------------------------------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    cert, key = _certificate(tmp_path, "bundles.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setattr(
        source_bundle, "_resolve", lambda host, port: [ipaddress.IPv4Address("127.0.0.1")]
    )
    monkeypatch.setattr(
        source_bundle, "_tls_verify", lambda: ssl.create_default_context(cafile=str(cert))
    )
    srv = Server(tls=context)
    yield srv
    srv.close()


def test_https_to_a_pinned_address_verifies_the_name(tls_server: Server, fetch: Fetch) -> None:
    tls_server.routes["/app.tar"] = Route(make_tar(GITHUB_STYLE))
    root = fetch(tls_server.url("/app.tar", host="bundles.test"))
    assert root.name == "app-main"
    assert tls_server.requests == [("/app.tar", f"bundles.test:{tls_server.port}")]


def test_https_certificate_for_another_name_is_refused(tls_server: Server, fetch: Fetch) -> None:
    with pytest.raises(SourceError, match=r"could not download bundle: .*certificate"):
        fetch(tls_server.url("/app.tar", host="other.test"))


# --- unsafe archives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("../evil", b"x")], "unsafe path"),
        ([entry("ok/../../evil", b"x")], "unsafe path"),
        ([entry("/tmp/evil", b"x")], "unsafe path"),
        ([symlink("link", "../../../etc")], "link pointing outside"),
        ([symlink("link", "/etc")], "link pointing outside"),
        ([symlink("sub", "."), symlink("link", "sub/..")], "link pointing outside"),
        (
            # Harmless by text ("a/b/c/x"), outside by resolution (l2 is the root).
            [symlink("a/b/c/l2", "../../.."), symlink("a/b/c/l1", "l2/../x")],
            "link pointing outside",
        ),
        ([symlink("link", "sub"), entry("link/file", b"x")], "inside a symbolic link"),
        ([entry("link/file", b"x"), symlink("link", "/etc")], "inside a symbolic link"),
        (
            [symlink("d", "sub"), entry("d", type=tarfile.DIRTYPE, mode=0o755)],
            "duplicate link",
        ),
        ([entry("hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")], "unsafe path"),
        ([entry("hard", type=tarfile.LNKTYPE, linkname="missing")], "unsafe hard link"),
        ([entry("tty", type=tarfile.CHRTYPE, devmajor=4, devminor=1)], "device file"),
        ([entry("disk", type=tarfile.BLKTYPE, devmajor=8)], "device file"),
        ([entry("pipe", type=tarfile.FIFOTYPE)], "device file or FIFO"),
    ],
)
def test_unsafe_tar_entries_are_refused(
    server: Server, fetch: Fetch, entries: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    server.routes["/evil.tar"] = Route(make_tar(entries))
    with pytest.raises(SourceError, match=message):
        fetch(server.url("/evil.tar"))
    work = fetch.dest.parent
    assert sorted(p.name for p in work.iterdir()) == ["src"]
    assert not any(fetch.dest.iterdir())  # refused before anything was written


def test_links_that_stay_inside_are_kept(server: Server, fetch: Fetch) -> None:
    entries = [
        entry("docs/index.md", b"hi"),
        symlink("docs/readme", "index.md"),
        symlink("a/b/up", "../../docs"),
        entry("copy", type=tarfile.LNKTYPE, linkname="docs/index.md"),
    ]
    server.routes["/ok.tar"] = Route(make_tar(entries))
    root = fetch(server.url("/ok.tar"))
    assert (root / "docs/readme").read_bytes() == b"hi"
    assert (root / "a/b/up/index.md").read_bytes() == b"hi"
    assert (root / "copy").read_bytes() == b"hi"


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        ("../evil", stat.S_IFREG | 0o644, "unsafe path"),
        ("/etc/evil", stat.S_IFREG | 0o644, "unsafe path"),
        ("C:/evil", stat.S_IFREG | 0o644, "unsafe path"),
        ("ok\\..\\..\\evil", stat.S_IFREG | 0o644, "unsafe path"),
        ("link", stat.S_IFLNK | 0o777, "symbolic link"),
        ("pipe", stat.S_IFIFO | 0o644, "device file or FIFO"),
    ],
)
def test_unsafe_zip_entries_are_refused(
    server: Server, fetch: Fetch, name: str, mode: int, message: str
) -> None:
    server.routes["/evil.zip"] = Route(make_zip([(name, b"/etc/passwd", mode)]))
    with pytest.raises(SourceError, match=message):
        fetch(server.url("/evil.zip"))
    assert sorted(p.name for p in fetch.dest.parent.iterdir()) == ["src"]


# --- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        ("8.8.8.8", False),
        ("140.82.112.3", False),
        ("::ffff:8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is forbidden
