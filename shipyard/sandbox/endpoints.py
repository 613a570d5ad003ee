"""The exact ``host:port`` endpoints a build's namespace must reach beyond the public
internet: Shipyard's registry and its token endpoint (the realm the registry names).

On loopback they are the DNAT'd loopback ports (``network.Loopback``). Elsewhere the
namespace's policy would refuse them when they are private addresses (a worker on another
machine pushing to the API machine's registry over a LAN) or this host's own addresses (the
API machine's own builds following a realm at ``SHIPYARD_PUBLIC_URL``). So each becomes one
exact allowance, never a wider one: an address of this host is DNAT'd to 127.0.0.1:<port>
like the loopback ports; another machine's address is accepted for that one TCP port.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from shipyard.sandbox.users import SandboxError

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


@dataclass(frozen=True)
class Endpoint:
    host: str  # a name or an IPv4 address (the namespace has no IPv6)
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> Endpoint:
        """``host[:port]`` (a registry) or ``scheme://host[:port]/…`` (a realm URL)."""
        if "://" in text:
            parts = urlsplit(text)
            if parts.hostname is None:
                raise ValueError(f"no host in {text!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return cls(parts.hostname, port)
        host, sep, port_text = text.partition("/")[0].rpartition(":")
        if not sep:
            return cls(port_text, default_port)
        if not port_text.isdigit():
            raise ValueError(f"invalid port in {text!r}")
        return cls(host.strip("[]"), int(port_text))


@dataclass(frozen=True)
class Reach:
    """What a build namespace is given for the endpoints."""

    loopback_ports: tuple[int, ...] = ()  # 127.0.0.1:<port>, as today
    # (address, port): this host's own address, DNAT'd to 127.0.0.1:<port> (the port is in
    # loopback_ports too).
    local: tuple[tuple[str, int], ...] = ()
    # (address, port): another machine, accepted for exactly that TCP port.
    remote: tuple[tuple[str, int], ...] = ()


def resolve_v4(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise SandboxError(f"cannot resolve {host}:{port} for the build network: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def is_local_address(address: str) -> bool:
    """An address of this host: binding to it works only then."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def _unique(items: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple(dict.fromkeys(items))


def plan(
    endpoints: Sequence[Endpoint],
    *,
    resolve: Callable[[str, int], list[str]] = resolve_v4,
    is_local: Callable[[str], bool] = is_local_address,
) -> Reach:
    """Resolved once, when the runtime is built: a registry that moves to another address
    needs a restart of the worker (docs/workers.md)."""
    ports: list[int] = []
    local: list[tuple[str, int]] = []
    remote: list[tuple[str, int]] = []
    for endpoint in endpoints:
        if endpoint.host in LOOPBACK_NAMES:
            ports.append(endpoint.port)
            continue
        addresses = resolve(endpoint.host, endpoint.port)
        if not addresses:
            raise SandboxError(f"{endpoint.host} has no IPv4 address (build networks are IPv4)")
        for address in addresses:
            ip = ipaddress.IPv4Address(address)
            if ip.is_loopback:
                ports.append(endpoint.port)
            elif is_local(address):
                ports.append(endpoint.port)
                local.append((address, endpoint.port))
            else:
                remote.append((address, endpoint.port))
    return Reach(tuple(dict.fromkeys(ports)), _unique(local), _unique(remote))
