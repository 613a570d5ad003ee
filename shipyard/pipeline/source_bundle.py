"""Download a source bundle (tar, tar.gz, zip) over HTTP(S) and unpack it safely.

The URL comes from a user, so this is a server-side request on their behalf (SSRF):
every hop's host is resolved, refused if any address is not public (unless the service
allows private URLs), and the connection goes to the address that was checked. Pinning
closes the DNS-rebinding gap: a second lookup by the HTTP library could return 127.0.0.1.
Environment proxies are not used for the same reason (the proxy would do its own lookup).

The archive is untrusted too: entries may not leave ``dest`` by absolute paths, ``..``,
links or links through links; devices and FIFOs are refused; sizes are capped while
reading, so a compression bomb stops at ``max_bytes``.
"""

from __future__ import annotations

import calendar
import contextlib
import ipaddress
import os
import queue
import re
import socket
import ssl
import stat
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import httpx

from shipyard.pipeline.errors import Cancelled, SourceError, TimedOut
from shipyard.pipeline.process import LineSink

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 5
# An archive of more entries than this is refused before extraction: inode exhaustion is a
# bomb too, and no real source tree comes close.
MAX_ENTRIES = 200_000
# Header bombs (a hostile-tenant review): tarfile reads a GNU long name or a pax header whole
# into memory, parses pax records with regexes that backtrack quadratically on long digit
# runs (CVE-2024-6232; Debian 12's Python 3.11 lacks the fix; ``re`` holds the GIL, so one
# header froze the whole process for minutes), and follows chains of extension headers by
# recursion. Each is bounded before tarfile sees it.
MAX_NAME_BYTES = 4096  # a member's path or link target (PATH_MAX)
MAX_PAX_HEADER_BYTES = 64 * 1024  # one pax extended/global header
MAX_HEADER_BYTES = 32 * 1024 * 1024  # every extension header of an archive together
MAX_HEADER_CHAIN = 8  # extension headers in a row before one member
MAX_PAX_DIGIT_RUN = 256  # the regexes' quadratic input: no honest record has such a run
# A zip's central directory is read whole (a ZipInfo per entry) before any entry is checked.
MAX_ZIP_DIRECTORY_BYTES = 64 * 1024 * 1024
PRIVATE_REFUSED = (
    "bundle URL resolves to a private address (set SHIPYARD_ALLOW_PRIVATE_URLS=true to allow)"
)
_CHUNK = 64 * 1024
# How often the deadline and the abort are checked while downloading, whatever the server
# does (trickles, stalls, slow DNS).
_TICK_S = 0.25
_PROGRESS_EVERY = 32 * 1024 * 1024
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Archives made on macOS carry resource forks here; they are never part of the source.
_MACOS_JUNK = "__MACOSX"


def fetch_bundle(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    on_line: LineSink,
    cancel: threading.Event,
) -> Path:
    """Download ``url`` and extract it into ``dest``; returns the source root.

    The root is the archive's single top-level directory when it has one (GitHub and GitLab
    archives wrap everything in ``<repo>-<ref>/``), else ``dest``. ``max_bytes`` caps both
    the download and the extracted size. Raises ``SourceError``, ``TimedOut``, ``Cancelled``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    # Next to dest, not in it: the download must not become part of the build context.
    fd, name = tempfile.mkstemp(prefix=".bundle-", suffix=".download", dir=dest.parent)
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            size = _download(
                url,
                out,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
                allow_private=allow_private,
                on_line=on_line,
                cancel=cancel,
            )
        on_line(f"Downloaded {_human(size)}")
        if cancel.is_set():
            raise Cancelled()
        files = _extract(archive, dest, max_bytes=max_bytes)
        on_line(f"Extracted {files} files")
    finally:
        archive.unlink(missing_ok=True)
    return _source_root(dest)


# --- addresses ------------------------------------------------------------------------------


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for anything but a public unicast address (loopback, RFC 1918, link-local and
    cloud metadata, CGNAT, multicast, reserved, unspecified), also when an IPv6 address
    embeds such an IPv4 one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_forbidden_address(ip.ipv4_mapped)
        embedded = ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and is_forbidden_address(embedded):
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast  # is_global is True for 224.0.0.0/4 in Python 3.11
        or ip.is_reserved
        or ip.is_unspecified
    )


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order of preference."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(f"could not download bundle: cannot resolve host {host!r}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        # Drop an IPv6 scope id ("fe80::1%eth0"); it cannot be carried in a URL anyway.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise SourceError(f"could not download bundle: cannot resolve host {host!r}")
    return addresses


def _pin(url: httpx.URL, allow_private: bool) -> tuple[httpx.URL, dict[str, str], str | None]:
    """(URL aimed at a checked address, Host header, TLS server name) for one request."""
    if url.scheme not in ("http", "https") or not url.host:
        raise SourceError("could not download bundle: only http and https URLs are supported")
    host = url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS want it
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _resolve(host, port)
    # Every address, not only the one used: a mixed answer is how rebinding is attempted.
    if not allow_private and any(is_forbidden_address(a) for a in addresses):
        raise SourceError(PRIVATE_REFUSED)
    pinned = url.copy_with(host=str(addresses[0]))
    host_header = f"[{host}]" if ":" in host else host
    if url.port is not None:
        host_header = f"{host_header}:{url.port}"
    is_literal = _is_ip_literal(host)
    # The certificate is checked against the name, not the address we connect to.
    server_name = None if is_literal or url.scheme != "https" else host
    return pinned, {"Host": host_header}, server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- download -------------------------------------------------------------------------------


def _tls_verify() -> ssl.SSLContext | bool:
    # True: httpx's default context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR). A function so
    # tests can trust their own certificate authority.
    return True


def _public(url: httpx.URL) -> str:
    """The URL for logs: no credentials and no query string (presigned URLs carry tokens
    there)."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


class _Download:
    """One download, run on a worker thread so that the caller can keep the deadline and the
    abort whatever the server does. A blocking read ends only when a byte arrives or its
    timeout passes, so checking between reads is not enough: a server sending one byte every
    0.5 s kept a 20 s deadline waiting 140 s (and the abort with it)."""

    def __init__(
        self,
        url: str,
        out: IO[bytes],
        *,
        max_bytes: int,
        timeout_s: float,
        deadline: float,
        allow_private: bool,
    ) -> None:
        self.url, self.out, self.max_bytes = url, out, max_bytes
        self.timeout_s, self.deadline, self.allow_private = timeout_s, deadline, allow_private
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.size: int | None = None
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def run(self) -> None:
        try:
            self.size = self._fetch()
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self.error = exc

    def stop(self) -> None:
        """Make the worker end soon: no more writes, and its socket shut down so that a read
        blocked on a silent server returns at once (shutdown wakes it; close would not)."""
        self._stopped.set()
        with self._lock:
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _check(self) -> None:
        if self._stopped.is_set():
            raise Cancelled()

    def _fetch(self) -> int:
        try:
            current = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise SourceError("could not download bundle: invalid URL") from exc
        self.lines.put(f"Downloading bundle from {_public(current)}")
        # An explicit transport: httpx then ignores HTTP(S)_PROXY, which would defeat pinning.
        transport = httpx.HTTPTransport(verify=_tls_verify(), retries=0)
        try:
            # trust_env=False: no .netrc credentials sent to a user-chosen host either.
            with httpx.Client(
                transport=transport, follow_redirects=False, trust_env=False
            ) as client:
                for _hop in range(MAX_REDIRECTS + 1):
                    self._check()
                    pinned, headers, server_name = _pin(current, self.allow_private)
                    remaining = max(self.deadline - time.monotonic(), 0.001)
                    request = client.build_request(
                        "GET",
                        pinned,
                        headers={**headers, "Accept-Encoding": "identity"},
                        timeout=httpx.Timeout(remaining),
                        extensions={"sni_hostname": server_name} if server_name else None,
                    )
                    response = client.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            # Resolve against the named URL, not the pinned one, and check the
                            # next host again on the next turn.
                            current = current.join(response.headers["location"])
                            self.lines.put(f"Redirected to {_public(current)}")
                            continue
                        if not response.is_success:
                            raise SourceError(
                                f"could not download bundle: HTTP {response.status_code}"
                            )
                        return self._save(response)
                    finally:
                        response.close()
        except httpx.TimeoutException as exc:
            raise TimedOut(f"downloading the bundle timed out after {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            self._check()  # a read failing because stop() shut the socket is not an error
            raise SourceError(f"could not download bundle: {exc}") from exc
        raise SourceError(f"could not download bundle: more than {MAX_REDIRECTS} redirects")

    def _save(self, response: httpx.Response) -> int:
        too_large = SourceError(f"bundle is larger than {self.max_bytes} bytes")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large  # before reading a byte
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
        if self._stopped.is_set():  # stop() came before the socket was known
            self.stop()
        size = 0
        next_report = _PROGRESS_EVERY
        # No chunk size: each network read is yielded as it arrives (a chunk size would
        # buffer a trickle for minutes). The declared length can lie: count what arrives.
        for chunk in response.iter_bytes():
            self._check()
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            self.out.write(chunk)
            if time.monotonic() > self.deadline:
                raise httpx.ReadTimeout("overall deadline passed")
            if size >= next_report:
                self.lines.put(f"Downloaded {_human(size)} so far")
                next_report += _PROGRESS_EVERY
        return size


def _download(
    url: str,
    out: IO[bytes],
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    on_line: LineSink,
    cancel: threading.Event,
) -> int:
    download = _Download(
        url,
        out,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        deadline=time.monotonic() + timeout_s,
        allow_private=allow_private,
    )
    worker = threading.Thread(target=download.run, name="bundle-download", daemon=True)
    worker.start()

    def drain() -> None:
        # Log lines are written from this thread only: the sink is the caller's.
        while not download.lines.empty():
            on_line(download.lines.get())

    try:
        while worker.is_alive():
            worker.join(_TICK_S)
            drain()
            if cancel.is_set():
                raise Cancelled()
            if time.monotonic() > download.deadline and worker.is_alive():
                raise TimedOut(f"downloading the bundle timed out after {timeout_s:g} s")
    finally:
        if worker.is_alive():
            download.stop()
            # Shut down, the worker ends within a moment; never write to ``out`` after this
            # returns (the caller closes and deletes it).
            worker.join(_TICK_S)
    drain()
    if download.error is not None:
        raise download.error
    assert download.size is not None
    return download.size


def _human(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


# --- extraction -----------------------------------------------------------------------------


def extract_archive(archive: Path, dest: Path, *, max_bytes: int) -> int:
    """Unpack a local archive (an upload) with the same checks as a downloaded bundle:
    no absolute paths, ``..``, links out of ``dest``, devices or FIFOs; at most ``max_bytes``
    extracted. Returns the number of files. Raises ``SourceError``."""
    dest.mkdir(parents=True, exist_ok=True)
    return _extract(archive, dest, max_bytes=max_bytes)


def _extract(archive: Path, dest: Path, *, max_bytes: int) -> int:
    """Unpack by content, not by name: the URL's extension says nothing reliable."""
    with archive.open("rb") as f:
        head = f.read(512)
    try:
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return _extract_zip(archive, dest, max_bytes)
        compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))
        if compressed or head[257:262] == b"ustar" or tarfile.is_tarfile(archive):
            return _extract_tar(archive, dest, max_bytes)
    except SourceError:
        raise
    except tarfile.FilterError as exc:
        raise SourceError(f"bundle contains an unsafe entry: {exc}") from exc
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise SourceError(f"could not extract bundle: {exc}") from exc
    raise SourceError("bundle is not a tar, tar.gz or zip archive")


def _safe_name(name: str) -> str:
    """``name`` as a normalised relative path; refuses absolute paths and ``..``."""
    name = name.replace("\\", "/")  # zip files made on Windows
    if "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise SourceError(f"bundle contains an unsafe path: {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SourceError(f"bundle contains an unsafe path: {name!r}")
    return "/".join(parts)


def _parents(name: str) -> Iterable[str]:
    parts = name.split("/")
    return ("/".join(parts[:n]) for n in range(1, len(parts)))


def _link_escapes(name: str, target: str, links: dict[str, str]) -> bool:
    """Whether symlink ``name`` -> ``target`` resolves outside the root, following the
    archive's other symlinks the way the kernel would (``a -> ../../`` then ``b -> a/..``
    looks harmless by text alone)."""
    stack = name.split("/")[:-1]
    pending = target.split("/")
    if target.startswith("/"):
        return True
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        link = links.get("/".join(stack))
        if link is not None:
            hops += 1
            if hops > 40 or link.startswith("/"):  # 40: the kernel's own loop limit
                return True
            stack.pop()
            pending = link.split("/") + pending
    return False


_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (MAX_PAX_DIGIT_RUN + 1))


def _check_pax(data: bytes) -> None:
    """Parse the records ourselves, linearly, before tarfile's regexes do: each must be
    ``"<len> <key>=<value>\n"`` with ``len`` its exact size; no GNU sparse maps (they make
    tarfile read block lists of any length); names at most ``MAX_NAME_BYTES``."""
    if _DIGIT_RUN.search(data):
        raise SourceError("bundle has a malformed pax header (a run of digits too long)")
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding to the block
            if data[pos:].strip(b"\x00"):
                raise SourceError("bundle has a malformed pax header")
            return
        space = data.find(b" ", pos, pos + 12)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise SourceError("bundle has a malformed pax header")
        length = int(digits)
        record = data[pos : pos + length]
        if length <= len(digits) + 3 or len(record) != length or not record.endswith(b"\n"):
            raise SourceError("bundle has a malformed pax header")
        keyword, eq, value = record[len(digits) + 1 : -1].partition(b"=")
        if not eq or not keyword:
            raise SourceError("bundle has a malformed pax header")
        if keyword.startswith(b"GNU.sparse"):
            raise SourceError("bundle contains a sparse file (not supported)")
        if keyword in (b"path", b"linkpath") and len(value) > MAX_NAME_BYTES:
            raise SourceError(f"bundle has a path longer than {MAX_NAME_BYTES} bytes")
        pos += length


class _Replay:
    """``fileobj`` for tarfile's own header processing: the pax header just read and
    checked, then the real stream (no backwards seek: on a gzip stream that re-reads it)."""

    def __init__(self, real: IO[bytes], data: bytes) -> None:
        self._real, self._data = real, data

    def read(self, size: int = -1) -> bytes:
        if self._data is not None:
            data, self._data = self._data, None  # type: ignore[assignment]
            return data
        return self._real.read(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member reader with header bombs refused first (see ``MAX_HEADER_BYTES``)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise SourceError("bundle contains a sparse file (not supported)")
        if self.type not in _LONG_TYPES + _PAX_TYPES:
            return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]
        limit = MAX_NAME_BYTES + 1 if self.type in _LONG_TYPES else MAX_PAX_HEADER_BYTES
        if self.size > limit:
            what = "name" if self.type in _LONG_TYPES else "pax header"
            raise SourceError(f"bundle has a {what} of {self.size} bytes (at most {limit})")
        seen = getattr(tarfile_, "_shipyard_header_bytes", 0) + self.size
        depth = getattr(tarfile_, "_shipyard_header_chain", 0) + 1
        if seen > MAX_HEADER_BYTES:
            raise SourceError(f"bundle has more than {MAX_HEADER_BYTES} bytes of extended headers")
        if depth > MAX_HEADER_CHAIN:
            raise SourceError(f"bundle has more than {MAX_HEADER_CHAIN} extended headers in a row")
        tarfile_._shipyard_header_bytes = seen  # type: ignore[attr-defined]
        tarfile_._shipyard_header_chain = depth  # type: ignore[attr-defined]
        real = tarfile_.fileobj
        try:
            if self.type in _PAX_TYPES:
                data = real.read(self._block(self.size))  # type: ignore[attr-defined]
                _check_pax(data[: self.size])
                tarfile_.fileobj = _Replay(real, data)  # type: ignore[arg-type,assignment]
            return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]
        finally:
            tarfile_.fileobj = real
            tarfile_._shipyard_header_chain = depth - 1  # type: ignore[attr-defined]


def _check_tar(tf: tarfile.TarFile, max_bytes: int) -> list[tarfile.TarInfo]:
    """Our own checks before tarfile's ``data`` filter, which had bypasses in 3.11.x
    releases before 3.11.13 (CVE-2025-4517 and others)."""
    members: list[tarfile.TarInfo] = []
    links: dict[str, str] = {}
    seen: set[str] = set()
    total = 0
    for member in tf:  # lazily: a bomb stops at the first header past the limit
        if len(members) >= MAX_ENTRIES:
            raise SourceError(f"bundle has more than {MAX_ENTRIES} entries")
        if len(member.name) > MAX_NAME_BYTES or len(member.linkname) > MAX_NAME_BYTES:
            raise SourceError(f"bundle has a path longer than {MAX_NAME_BYTES} bytes")
        name = _safe_name(member.name)
        if member.ischr() or member.isblk() or member.isfifo():
            raise SourceError(f"bundle contains a device file or FIFO: {name!r}")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise SourceError(f"bundle contains an unsupported entry type: {name!r}")
        if not name or name.split("/")[0] == _MACOS_JUNK:
            continue
        total += member.size if member.isfile() else 0
        if total > max_bytes:
            raise SourceError(f"bundle is larger than {max_bytes} bytes when extracted")
        if name in seen and (name in links or member.issym()):
            # Replacing a link with a directory (or the reverse) is how writes are
            # redirected through a link; no honest archive does it.
            raise SourceError(f"bundle contains a duplicate link entry: {name!r}")
        if member.islnk():
            target = _safe_name(member.linkname)
            if target not in seen or target in links:
                raise SourceError(f"bundle contains an unsafe hard link: {name!r}")
        if member.issym():
            links[name] = member.linkname
        seen.add(name)
        members.append(member)
    for member in members:
        name = _safe_name(member.name)
        if any(parent in links for parent in _parents(name)):
            raise SourceError(f"bundle contains an entry inside a symbolic link: {name!r}")
    for name, target in links.items():
        if _link_escapes(name, target, links):
            raise SourceError(f"bundle contains a link pointing outside it: {name!r}")
    return members


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> int:
    with tarfile.open(archive, mode="r:*", tarinfo=_BoundedTarInfo) as tf:
        members = _check_tar(tf, max_bytes)
        tf.extractall(dest, members=members, filter="data")
    return sum(1 for m in members if m.isfile())


def _check_zip(infos: list[zipfile.ZipInfo], max_bytes: int) -> list[tuple[str, zipfile.ZipInfo]]:
    """Every entry is checked before any is written, so a refusal leaves ``dest`` empty."""
    if len(infos) > MAX_ENTRIES:
        raise SourceError(f"bundle has more than {MAX_ENTRIES} entries")
    # Declared sizes first (cheap refusal of a bomb); _extract_zip counts while writing.
    if sum(info.file_size for info in infos) > max_bytes:
        raise SourceError(f"bundle is larger than {max_bytes} bytes when extracted")
    checked: list[tuple[str, zipfile.ZipInfo]] = []
    for info in infos:
        if len(info.filename) > MAX_NAME_BYTES:
            raise SourceError(f"bundle has a path longer than {MAX_NAME_BYTES} bytes")
        name = _safe_name(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise SourceError(f"bundle contains a symbolic link: {name!r}")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise SourceError(f"bundle contains a device file or FIFO: {name!r}")
        if info.flag_bits & 0x1:
            raise SourceError(f"bundle contains an encrypted file: {name!r}")
        if name and name.split("/")[0] != _MACOS_JUNK:
            checked.append((name, info))
    return checked


def _check_zip_directory(archive: Path) -> None:
    """Entry count and central directory size from the end record, before ``ZipFile`` reads
    the whole directory into memory (a ZipInfo per entry)."""
    with archive.open("rb") as f:
        end = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    if end is None:
        raise SourceError("could not extract bundle: not a zip archive (no end record)")
    entries, size = int(end[zipfile._ECD_ENTRIES_TOTAL]), int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    if entries > MAX_ENTRIES:
        raise SourceError(f"bundle has more than {MAX_ENTRIES} entries")
    if size > MAX_ZIP_DIRECTORY_BYTES:
        raise SourceError(f"bundle's zip directory is larger than {MAX_ZIP_DIRECTORY_BYTES} bytes")


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> int:
    # Written by hand rather than with ZipFile.extractall: it follows no links (none are
    # created) and keeps no permission bits but the executable one.
    _check_zip_directory(archive)
    with zipfile.ZipFile(archive) as zf:
        budget = max_bytes
        files = 0
        for name, info in _check_zip(zf.infolist(), max_bytes):
            target = dest / name
            if info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFDIR:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:
                        raise SourceError(f"bundle is larger than {max_bytes} bytes when extracted")
                    out.write(chunk)
            target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
            # The archive's time (read as UTC), like tar: the image's timestamp comes from it.
            stamp = calendar.timegm((*info.date_time, 0, 0, 0))
            os.utime(target, (stamp, stamp))
            files += 1
    return files


def _source_root(dest: Path) -> Path:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest
