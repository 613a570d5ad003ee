"""What a hostile tenant has: git repositories of its own, API calls, network namespaces that
stand for "the internet" and "a private network" (no address outside this machine)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.live import BIN, LiveServer


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
    }  # fmt: skip
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


def make_repo(
    root: Path,
    files: Mapping[str, str | bytes],
    symlinks: Mapping[str, str] | None = None,
) -> str:
    """A git repository (branch main, one commit) with ``files`` and ``symlinks`` (path ->
    link target); returns its file:// URL."""
    work = root / f"repo-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    git(work, "init", "-q", "--initial-branch=main")
    for path, content in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    for path, link in (symlinks or {}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, work / path)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "hostile")
    return f"file://{work}"


@dataclass
class Service:
    """One service of a tenant's project; builds through the API like any client."""

    live: LiveServer
    project: str
    id: str

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project}/services/{self.id}"

    def start(self, body: dict[str, Any] | None = None) -> str:
        with self.live.client() as c:
            r = c.post(f"{self.path}/build", json=body or {})
            assert r.status_code == 200, r.text
            return str(r.json()["data"]["id"])

    def wait(self, build_id: str, timeout: float = 240) -> dict[str, Any]:
        return self.live.wait(f"{self.path}/build/{build_id}", timeout=timeout)

    def logs(self, build_id: str) -> list[str]:
        return self.live.logs(f"{self.path}/build-logs", build_id)

    def build(
        self, body: dict[str, Any] | None = None, timeout: float = 240
    ) -> tuple[dict[str, Any], list[str]]:
        build_id = self.start(body)
        data = self.wait(build_id, timeout)
        return data, self.logs(build_id)


@dataclass
class Tenant:
    """One project: what a tenant with a project token can do."""

    live: LiveServer
    project: str
    root: Path  # where its repositories are made
    _count: int = 0

    def service(
        self,
        files: Mapping[str, str | bytes],
        symlinks: Mapping[str, str] | None = None,
        docker: Mapping[str, str] | None = None,
    ) -> Service:
        """A new service building a fresh repository with ``files`` and ``symlinks``."""
        self._count += 1
        url = make_repo(self.root, files, symlinks)
        body = {
            "name": f"s{self._count}",
            "vcsData": {"projectUrl": url, "projectType": "self-hosted", "projectBranch": "main"},
            "buildSettings": {
                "dockerfile": dict(
                    docker or {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}
                )
            },
        }
        with self.live.client() as c:
            r = c.post(f"/v1/projects/{self.project}/services/combined", json=body)
            assert r.status_code == 200, r.text
            return Service(self.live, self.project, r.json()["data"]["id"])

    def build(
        self,
        files: Mapping[str, str | bytes],
        symlinks: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float = 240,
    ) -> tuple[dict[str, Any], list[str]]:
        return self.service(files, symlinks).build(body, timeout)


def new_tenant(live: LiveServer, name: str, root: Path) -> Tenant:
    with live.client() as c:
        r = c.post("/v1/projects", json={"name": name})
        assert r.status_code == 200, r.text
        root.mkdir(parents=True, exist_ok=True)
        return Tenant(live, r.json()["data"]["id"], root)


def utf8(value: str) -> dict[str, str]:
    """Northflank's form: ``data`` is always base64; the text was utf-8."""
    return {"data": base64.b64encode(value.encode()).decode(), "encoding": "utf-8"}


def b64(value: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(value).decode(), "encoding": "base64"}


# --- network namespaces standing for other machines ---------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


HTTP_SERVER = r"""
import http.server, sys
token, log = sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(f"{self.client_address[0]} {self.path}\n")
        body = (token + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


@dataclass
class FakeHost:
    """A network namespace linked to the host by a veth, with an HTTP server on ``port``
    that answers ``token`` and logs every request (client address and path)."""

    name: str
    host_if: str
    host_ip: str
    addresses: tuple[str, ...]  # the namespace's addresses (first: on the veth)
    port: int
    token: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ip(self) -> str:
        return self.addresses[0]

    def requests(self) -> list[str]:
        try:
            return self.log.read_text().splitlines()
        except OSError:
            return []

    def exec(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@contextlib.contextmanager
def fake_host(
    tmp: Path, tag: str, host_cidr: str, ns_cidr: str, extra: tuple[str, ...] = (), port: int = 8080
) -> Iterator[FakeHost]:
    """``host_cidr`` on the host's end of the veth, ``ns_cidr`` (+ ``extra`` /32 addresses,
    routed by the host through the namespace) inside it."""
    suffix = uuid.uuid4().hex[:6]
    name, host_if, ns_if = f"rt{tag}{suffix}", f"rth{tag}{suffix}", f"rtn{tag}{suffix}"
    host_ip = host_cidr.split("/")[0]
    ns_ip = ns_cidr.split("/")[0]
    token = f"{tag.upper()}-SERVER-{uuid.uuid4().hex[:10]}"
    log = tmp / f"{name}.requests"
    host = FakeHost(name, host_if, host_ip, (ns_ip, *extra), port, token, log)
    try:
        _ip("netns", "add", name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _ip("addr", "add", host_cidr, "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", ns_cidr, "dev", ns_if)
        for address in extra:
            _ip("-n", name, "addr", "add", f"{address}/32", "dev", ns_if)
            _ip("route", "add", f"{address}/32", "via", ns_ip, "dev", host_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "default", "via", host_ip)
        host.proc = subprocess.Popen(
            ["ip", "netns", "exec", name, "python3", "-c", HTTP_SERVER, str(port), token,
             str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while host.exec("python3", "-c", _PROBE, ns_ip, str(port)).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server in {name} did not start")
            time.sleep(0.2)
        log.unlink(missing_ok=True)  # the readiness probe is not a request of the build
        yield host
    finally:
        if host.proc is not None:
            host.proc.kill()
            host.proc.wait()
        for address in extra:
            _ip("route", "del", f"{address}/32", check=False)
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", name, check=False)


_PROBE = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)"


def http_get(address: str, port: int, path: str = "/", timeout: float = 3) -> str | None:
    """A plain HTTP GET from the host; the body, or None if it could not connect."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            chunks = []
            while data := conn.recv(65536):
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


class HostListener:
    """A TCP listener of the host on ``0.0.0.0:<port>`` that answers a token and counts
    connections: a RUN step that reaches it sees the token."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.token = f"HOST-LISTENER-{uuid.uuid4().hex[:10]}"
        self.peers: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            with contextlib.suppress(OSError):
                # Read the request first: closing with unread data would reset the
                # connection before the client reads the token.
                conn.settimeout(3)
                conn.recv(4096)
                conn.sendall(f"HTTP/1.0 200 OK\r\n\r\n{self.token}\n".encode())
                conn.shutdown(socket.SHUT_WR)
                conn.recv(4096)
            conn.close()

    def close(self) -> None:
        self.sock.close()


def eth_addresses() -> list[str]:
    """The host's IPv4 addresses on real interfaces (not loopback, not veths we made)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in out.splitlines():
        words = line.split()
        dev, cidr = words[1], words[3]
        if dev == "lo" or dev.startswith(("syh", "rth", "veth")):
            continue
        found.append(cidr.split("/")[0])
    return found


# --- images ---------------------------------------------------------------------------------


def image_files(authfile: Path, ref: str, dest: Path) -> dict[str, bytes]:
    """Every regular file of every layer of ``ref`` (path -> content)."""
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--src-authfile", str(authfile),
         f"docker://{ref}", f"oci:{dest}:x"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    files: dict[str, bytes] = {}
    for blob in (dest / "blobs" / "sha256").iterdir():
        try:
            with tarfile.open(blob) as tar:
                for member in tar:
                    if member.isfile():
                        data = tar.extractfile(member)
                        files[member.name] = data.read() if data else b""
        except tarfile.ReadError:
            continue
    return files


def write_authfile(path: Path, registry: str, username: str, password: str) -> Path:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    path.chmod(0o600)
    return path


def create_project_token(live: LiveServer, project: str, name: str) -> str:
    """What an operator hands a tenant: an API token limited to its project."""
    env = {**os.environ, "SHIPYARD_DATA_DIR": str(live.data_dir)}
    shipyard = BIN / "shipyard"
    out = subprocess.run(
        [str(shipyard), "tokens", "create", "--name", name, "--project", project],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return str(json.loads(out.stdout.strip().splitlines()[-1])["token"])
