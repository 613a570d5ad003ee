"""One outbound notification request, safe against DNS rebinding, redirects and receivers
that never finish answering.

The URL's host is resolved once, by the address policy (``remote_policy.check_remote``),
and every address it returned is checked; the connection then goes to one of exactly those
addresses. The request still names the host (URL, ``Host`` header, TLS server name and
certificate check), so virtual hosts and HTTPS work as usual. Letting httpx resolve the name
again would let a DNS server answer "public" to the check and 127.0.0.1 or the metadata
address to the connection. No redirect is followed, no proxy or ``.netrc`` from the
environment is used (a proxy would resolve the name itself).

The receiver is any tenant's URL, and one thread sends every project's notifications: only
the status line and headers are read (a body of gigabytes is never downloaded), and the
whole attempt has one deadline — httpx's timeouts are per read, so a receiver trickling a
header byte every few seconds would otherwise hold the sender for hours. At the deadline the
connection's socket is shut down, which ends a read blocked on it at once.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping

import httpcore
import httpx

from shipyard.pipeline.remote_policy import RemotePin


class _Backend(httpcore.NetworkBackend):
    """Connects the one URL being sent: to ``pin``'s addresses only when there is a pin (to
    the name otherwise); every connection is shut down by ``expire``."""

    def __init__(self, host: str, pin: RemotePin | None) -> None:
        self._host = host.lower()
        self._pin = pin
        self._real = httpcore.SyncBackend()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if self._pin is None:
            stream = self._real.connect_tcp(host, port, timeout, local_address, socket_options)
        elif host.lower() != self._host or port != self._pin.port:
            raise httpcore.ConnectError(f"{host}:{port} is not the address that was checked")
        else:
            stream = self._connect_pinned(self._pin, port, timeout, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        with self._lock:
            if isinstance(sock, socket.socket):
                self._sockets.append(sock)
            if self._expired:
                stream.close()
                raise httpcore.ConnectTimeout("the notification's deadline passed")
        return stream

    def _connect_pinned(
        self,
        pin: RemotePin,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in pin.addresses:
            try:
                return self._real.connect_tcp(address, port, timeout, local_address,
                                              socket_options)  # fmt: skip
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # a pin holds at least one address
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for notifications")

    def sleep(self, seconds: float) -> None:
        self._real.sleep(seconds)

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def expire(self) -> None:
        """Shut every connection down (a blocked read returns at once; close would not)."""
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _ssl_context() -> ssl.SSLContext:
    # httpx's default trust (certifi); a function so tests can trust their own authority.
    return httpx.create_ssl_context(trust_env=False)


class _Transport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx takes no network backend; its pool is replaced by one with ours (the same
        # settings httpx's default pool has). tests/notify pins this against a rebinding.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            network_backend=backend,
            retries=0,
        )


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    pin: RemotePin | None,
) -> int:
    """POST ``content`` to ``url`` within ``timeout_s`` in all, connecting only to ``pin``'s
    addresses (None: private URLs are allowed, any address will do). Returns the status;
    the body is not read, redirects are answers, never followed. Raises
    ``httpx.HTTPError``."""
    backend = _Backend(_origin_host(url), pin)
    deadline = threading.Timer(timeout_s, backend.expire)
    deadline.daemon = True
    deadline.start()
    try:
        with (
            httpx.Client(
                transport=_Transport(backend), trust_env=False, follow_redirects=False
            ) as client,  # fmt: skip
            client.stream(
                "POST", url, content=content, headers=dict(headers), timeout=timeout_s
            ) as response,
        ):
            return response.status_code
    except httpx.HTTPError as exc:
        if backend.expired:
            raise httpx.ReadTimeout(f"no complete answer within {timeout_s:g} s") from exc
        raise
    finally:
        deadline.cancel()


def _origin_host(url: str) -> str:
    """The host as httpcore hands it to the network backend (IDNA, no brackets)."""
    return httpx.URL(url).raw_host.decode("ascii")
