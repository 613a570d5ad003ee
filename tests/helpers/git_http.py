"""Git over smart HTTP on loopback (``git http-backend`` as CGI), for attacks on git's
network side: a twin pair on the same port of two loopback addresses (DNS rebinding), a
server that only redirects, one that wants a bearer of credentials, one that is slow.

Every request is recorded (address served, path, headers) so a test can tell which twin
git actually reached and what it sent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_BACKEND = shutil.which("git-http-backend") or "/usr/lib/git-core/git-http-backend"


@dataclass(frozen=True)
class Request:
    address: str  # the address of the server that answered
    path: str
    headers: dict[str, str]


@dataclass
class GitHttp:
    address: str
    port: int
    requests: list[Request] = field(default_factory=list)

    def url(self, name: str, host: str | None = None) -> str:
        return f"http://{host or self.address}:{self.port}/{name}"


@contextmanager
def git_http_server(
    root: Path,
    *,
    address: str = "127.0.0.1",
    port: int = 0,
    authorization: str | None = None,
    redirect_to: str | None = None,
    delay_s: float = 0.0,
    log: list[Request] | None = None,
) -> Iterator[GitHttp]:
    """Serve the bare repositories under ``root`` on ``address:port`` (0: any free port).

    ``authorization``: the ``Authorization`` header every request must carry (else 401 with
    a Basic challenge). ``redirect_to``: answer every request with a 302 to this base URL
    instead (the path is kept). ``delay_s``: wait this long before answering each request.
    ``log``: a list to record requests in (shared between twins), else the server's own."""
    state = GitHttp(address, port)
    records = log if log is not None else state.requests

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            records.append(Request(address, self.path, headers))
            if delay_s:
                time.sleep(delay_s)
            if redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", redirect_to.rstrip("/") + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if authorization is not None and headers.get("authorization") != authorization:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._cgi(headers)

        def _cgi(self, headers: dict[str, str]) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(headers.get("content-length", "0") or 0))
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": headers.get("content-type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
                "GIT_PROTOCOL": headers.get("git-protocol", ""),
                "HTTP_CONTENT_ENCODING": headers.get("content-encoding", ""),
            }
            done = subprocess.run([_BACKEND], input=body, env=env, capture_output=True,
                                  timeout=60, check=False)  # fmt: skip
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            extra: list[tuple[str, str]] = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    extra.append((name, value.strip()))
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def twin_servers(
    public_root: Path, internal_root: Path, **options: object
) -> Iterator[tuple[GitHttp, GitHttp]]:
    """The same port on 127.0.0.2 (stands for the public address the policy checked) and on
    127.0.0.1 (the internal service a rebinding answer would point git at). ``localhost``
    resolves to the internal one."""
    with ExitStack() as stack:
        internal = stack.enter_context(git_http_server(internal_root, **options))  # type: ignore[arg-type]
        public = stack.enter_context(
            git_http_server(public_root, address="127.0.0.2", port=internal.port, **options)  # type: ignore[arg-type]
        )
        yield public, internal


def bare_copy(source: Path, dest: Path) -> Path:
    """A bare clone of the repository at ``source`` as ``dest`` (served over HTTP)."""
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(dest)], check=True)
    return dest
