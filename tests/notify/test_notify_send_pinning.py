"""Outbound notifications attacked for real on loopback: a DNS answer that changes between
the address check and the connection (rebinding), and a redirect to an internal address.

Twin receivers listen on one port of 127.0.0.2 (the "public" address the policy approves:
allowed as a network here) and 127.0.0.1 (the internal service). The policy's resolver is
told ``localhost`` is 127.0.0.2; the system, and so any second lookup, says 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shipyard.notify import endpoints, send
from shipyard.notify.worker import Notifier, NotifySettings
from shipyard.pipeline import remote_policy
from shipyard.pipeline.remote_policy import RemotePin
from tests.helpers.receiver import Receiver, receiver
from tests.pipeline.test_source_bundle import _certificate

PUBLIC = ("127.0.0.2/32",)


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = remote_policy.lookup

    def answer(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return real(host, port)

    monkeypatch.setattr(remote_policy, "lookup", answer)


@pytest.fixture
def twins() -> Iterator[tuple[Receiver, Receiver]]:
    with receiver() as internal, receiver(address="127.0.0.2", port=int(internal.url.split(":")[2].split("/")[0])) as public:  # fmt: skip
        yield public, internal


def _notifier() -> Notifier:
    settings = NotifySettings(allow_private=False, allowed_networks=PUBLIC, timeout_s=10)
    return Notifier(cast(Any, None), cast(Any, None), settings, cast(Any, None))


def _post(url: str) -> tuple[dict[str, Any], bool, bool]:
    return _notifier()._post(url, "secret", b"{}", row_event="build.concluded", attempt_id="1-1")


def test_the_harness_rebinds_an_unpinned_client(
    rebinding: None, twins: tuple[Receiver, Receiver]
) -> None:
    """Control: the policy approves 127.0.0.2, a client that resolves again gets 127.0.0.1."""
    public, internal = twins
    url = public.url.replace("127.0.0.2", "localhost")
    pin = endpoints.check_url(url, allow_private=False, allowed_networks=PUBLIC)
    assert pin is not None and pin.addresses == ("127.0.0.2",)
    httpx.post(url, content=b"{}")
    assert len(internal.requests) == 1 and not public.requests


def test_a_notification_goes_to_the_checked_address(
    rebinding: None, twins: tuple[Receiver, Receiver]
) -> None:
    public, internal = twins
    url = public.url.replace("127.0.0.2", "localhost")
    record, delivered, permanent = _post(url)
    assert delivered and not permanent, record
    assert internal.requests == [], "the sender resolved the host again"
    assert len(public.requests) == 1
    port = url.split(":")[2].split("/")[0]
    assert public.requests[0].headers["host"] == f"localhost:{port}"


def test_a_pinned_backend_refuses_any_other_host() -> None:
    pin = RemotePin("example.com", 80, ("127.0.0.2",))
    with receiver() as internal:
        # As if something (a redirect, a bug) asked for another host through the transport.
        with pytest.raises(httpx.ConnectError):
            send.post(internal.url, content=b"{}", headers={}, timeout_s=5, pin=pin)
        assert internal.requests == []


def test_a_redirect_to_an_internal_address_is_not_followed() -> None:
    with receiver() as internal:
        with receiver([302], address="127.0.0.2", location=internal.url) as public:
            record, delivered, _permanent = _post(public.url)
        assert record["status"] == 302 and not delivered
        assert len(public.requests) == 1
        assert internal.requests == []


def test_a_private_address_is_refused_before_any_connection() -> None:
    with receiver() as internal:
        record, delivered, permanent = _post(internal.url)
    assert permanent and not delivered and "refused" in record["error"]
    assert internal.requests == []


def test_https_over_the_pinned_address_checks_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNI and the certificate check still use the URL's name, not the pinned address."""
    cert, key = _certificate(tmp_path, "hooks.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    monkeypatch.setattr(send, "_ssl_context", lambda: ssl.create_default_context(cafile=str(cert)))
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    with receiver(tls=server_context) as rx:
        port = int(rx.url.split(":")[2].split("/")[0])
        pin = RemotePin("hooks.test", port, ("127.0.0.1",))
        status = send.post(f"https://hooks.test:{port}/hook", content=b"{}", headers={},
                           timeout_s=10, pin=pin)  # fmt: skip
        assert status == 200
        assert rx.requests[0].headers["host"] == f"hooks.test:{port}"
        with pytest.raises(httpx.ConnectError, match="certificate"):
            send.post(f"https://other.test:{port}/hook", content=b"{}", headers={},
                      timeout_s=10, pin=RemotePin("other.test", port, ("127.0.0.1",)))  # fmt: skip
    assert names[0] == "hooks.test"


@contextmanager
def _hostile(mode: str) -> Iterator[str]:
    """A receiver that answers 200 with an endless body, or trickles its status line."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                if mode == "endless":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
                    while not stop.is_set():
                        self.wfile.write(b"x" * 65536)
                else:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000:
                        if stop.wait(0.2):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
            except OSError:
                return

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_an_endless_body_is_never_read() -> None:
    with _hostile("endless") as url:
        started = time.monotonic()
        assert send.post(url, content=b"{}", headers={}, timeout_s=10, pin=None) == 200
        assert time.monotonic() - started < 5


def test_a_trickling_receiver_cannot_hold_the_sender_past_the_deadline() -> None:
    """Each byte comes well within the per-read timeout; the attempt still ends on time."""
    with _hostile("trickle") as url:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException, match="within 1 s"):
            send.post(url, content=b"{}", headers={}, timeout_s=1, pin=None)
        assert time.monotonic() - started < 3
