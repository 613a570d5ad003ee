"""bundleUrl downloads on loopback: a redirect to another host gets neither the URL's
credentials nor its query string (presigned tokens). Each hop's re-check and the address pin
are tested in test_source_bundle.py."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shipyard.pipeline.source_bundle import fetch_bundle


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = tarfile.TarInfo("app/a.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


@contextmanager
def _server(seen: list[tuple[int, str, str | None]], location: str | None = None) -> Iterator[int]:
    body = _tar()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            seen.append((port, self.path, self.headers.get("Authorization")))
            if location is not None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fetch(url: str, dest: Path, *, allow_private: bool) -> Path:
    return fetch_bundle(url, dest, max_bytes=1 << 20, timeout_s=10, allow_private=allow_private,
                        on_line=lambda _l: None, cancel=threading.Event())  # fmt: skip


def test_a_redirect_to_another_host_carries_no_credentials(tmp_path: Path) -> None:
    seen: list[tuple[int, str, str | None]] = []
    with (
        _server(seen) as other,
        _server(seen, location=f"http://localhost:{other}/next") as first,
    ):
        _fetch(f"http://u:tok@127.0.0.1:{first}/start?sig=s3cret", tmp_path / "src",
               allow_private=True)  # fmt: skip
    assert seen[0] == (first, "/start?sig=s3cret", "Basic dTp0b2s=")
    assert seen[1] == (other, "/next", None)
