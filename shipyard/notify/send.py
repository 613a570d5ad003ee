"""One outbound notification request, safe against DNS rebinding and redirects.

The URL's host is resolved once, by the address policy (``remote_policy.check_remote``),
and every address it returned is checked; the connection then goes to one of exactly those
addresses. The request still names the host (URL, ``Host`` header, TLS server name and
certificate check), so virtual hosts and HTTPS work as usual. Letting httpx resolve the name
again would let a DNS server answer "public" to the check and 127.0.0.1 or the metadata
address to the connection. No redirect is followed, no proxy or ``.netrc`` from the
environment is used (a proxy would resolve the name itself).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping

import httpcore
import httpx

from shipyard.pipeline.remote_policy import RemotePin


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects ``host:port`` of the one URL being sent to the checked addresses only."""

    def __init__(self, host: str, pin: RemotePin) -> None:
        self._host = host.lower()
        self._pin = pin
        self._real = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower() != self._host or port != self._pin.port:
            raise httpcore.ConnectError(f"{host}:{port} is not the address that was checked")
        failure: httpcore.ConnectError | None = None
        for address in self._pin.addresses:
            try:
                return self._real.connect_tcp(address, port, timeout, local_address, socket_options)
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


def _ssl_context() -> ssl.SSLContext:
    # httpx's default trust (certifi); a function so tests can trust their own authority.
    return httpx.create_ssl_context(trust_env=False)


class _PinnedTransport(httpx.HTTPTransport):
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
) -> httpx.Response:
    """POST ``content`` to ``url``, connecting only to ``pin``'s addresses (None: private
    URLs are allowed, any address will do). Redirects are answers, never followed.
    Raises ``httpx.HTTPError``."""
    transport: httpx.HTTPTransport = httpx.HTTPTransport(trust_env=False, retries=0)
    if pin is not None:
        transport = _PinnedTransport(_PinnedBackend(_origin_host(url), pin))
    with httpx.Client(transport=transport, trust_env=False, follow_redirects=False) as client:
        return client.post(url, content=content, headers=dict(headers), timeout=timeout_s)


def _origin_host(url: str) -> str:
    """The host as httpcore hands it to the network backend (IDNA, no brackets)."""
    return httpx.URL(url).raw_host.decode("ascii")
