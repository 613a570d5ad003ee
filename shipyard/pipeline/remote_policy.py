"""Which git remotes Shipyard itself may contact on a build's behalf.

Fetches run inside the build's network namespace (the kernel applies the build's policy);
the git calls made on the host (``ls-remote`` for the reuse check, the mirror updates of the
branches endpoint and of webhooks) and the clear error message come from this check, the
same one bundle URLs get: every address the host resolves to must be public, unless private
URLs are allowed or the address is in an operator-allowed network.

The check returns the addresses it approved (a ``RemotePin``): git must connect to exactly
those (``shipyard.pipeline.git_remote``), never resolve the name again — a second answer
could be another address (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shipyard.pipeline.errors import SourceError
from shipyard.pipeline.source_bundle import is_forbidden_address

# scp-like ``user@host:path`` (git's own rule: no slash before the first colon).
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>\[[^\]]+\]|[^:/]+):(?!//)")


@dataclass(frozen=True)
class RemotePin:
    """The addresses a remote's host was checked to resolve to, for git to use instead of
    resolving ``host`` again."""

    host: str
    port: int
    addresses: tuple[str, ...]


def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
    """The resolver's answer for ``host`` (the one lookup a pinned request is based on)."""
    return socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)


def remote_host(url: str) -> tuple[str, int] | None:
    """(host, port) of a network remote; None for local paths and ``file://``."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return None
        default = {"https": 443, "http": 80, "ssh": 22, "git": 9418}.get(parts.scheme, 0)
        return parts.hostname, parts.port or default
    if match := _SCP_LIKE.match(url):
        return match["host"].strip("[]"), 22
    return None


def check_remote(
    url: str,
    *,
    allow_private: bool,
    allowed_networks: Sequence[str] = (),
    noun: str = "repository",
    setting: str = "SHIPYARD_BUILD_ALLOWED_NETWORKS allows named networks",
) -> RemotePin | None:
    """The checked addresses of ``url``'s host (None for a local repository, or when private
    URLs are allowed: then any address is). ``noun`` / ``setting``: how messages name the
    host and the way to allow it (the same policy serves outbound notifications)."""
    target = remote_host(url)
    if target is None or allow_private:
        return None
    host, port = target
    try:
        infos = lookup(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(f"cannot resolve the {noun} host {host!r}") from exc
    allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if is_forbidden_address(address) and not any(address in net for net in allowed):
            raise SourceError(
                f"the {noun} host {host} resolves to a private or local address "
                f"({address}); only public addresses may be reached ({setting})"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise SourceError(f"cannot resolve the {noun} host {host!r}")
    return RemotePin(host, port, tuple(addresses))
