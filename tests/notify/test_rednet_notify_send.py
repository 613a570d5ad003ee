"""Outbound notifications attacked for real on loopback: a DNS answer that changes between
the address check and the connection (rebinding), and a redirect to an internal address.

Twin receivers listen on one port of 127.0.0.2 (the "public" address the policy approves:
allowed as a network here) and 127.0.0.1 (the internal service). The policy's resolver is
told ``localhost`` is 127.0.0.2; the system, and so any second lookup, says 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
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
        answer = send.post(f"https://hooks.test:{port}/hook", content=b"{}", headers={},
                           timeout_s=10, pin=pin)  # fmt: skip
        assert answer.status_code == 200
        assert rx.requests[0].headers["host"] == f"hooks.test:{port}"
        with pytest.raises(httpx.ConnectError, match="certificate"):
            send.post(f"https://other.test:{port}/hook", content=b"{}", headers={},
                      timeout_s=10, pin=RemotePin("other.test", port, ("127.0.0.1",)))  # fmt: skip
    assert names[0] == "hooks.test"
