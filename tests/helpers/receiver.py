"""An HTTP receiver on loopback that records what it is sent (outbound notifications)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer, in order; 200 once they run out.
    answers: list[int] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)


@contextmanager
def receiver(
    answers: list[int] | None = None,
    *,
    address: str = "127.0.0.1",
    port: int = 0,
    location: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Receiver]:
    """``address``/``port``: where to listen (twins on one port of two loopback addresses
    stand for a rebinding DNS answer); ``location``: sent with every answer (redirects)."""
    state = Receiver(url="", answers=list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.arrived:
                state.requests.append(Received({k.lower(): v for k, v in self.headers.items()},
                                               body))  # fmt: skip
                code = state.answers.pop(0) if state.answers else 200
                state.arrived.notify_all()
            self.send_response(code)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://{address}:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def wait_for(state: Receiver, count: int, timeout: float = 60.0) -> list[Received]:
    with state.arrived:
        if not state.arrived.wait_for(lambda: len(state.requests) >= count, timeout=timeout):
            raise AssertionError(f"{len(state.requests)} of {count} notifications arrived")
        return list(state.requests)
