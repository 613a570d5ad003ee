"""Another machine on this one: a network namespace with a private address (10.98.x.2) that
forwards every TCP connection to this host's end of the link (10.98.x.1). A worker told to
use ``10.98.x.2:<port>`` then reaches the API as it would across a LAN: its builds' traffic
leaves their namespace through the host's FORWARD chain to a private address, which the
build policy refuses unless it was allowed for exactly that address and port."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteHost:
    address: str  # "the other machine", as workers see it
    host_side: str  # this host's end of the link, where the API answers


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=20)


def _used() -> list[ipaddress.IPv4Interface]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [
        ipaddress.IPv4Interface(w) for line in out.splitlines() for w in line.split()
        if "/" in w and w[0].isdigit()
    ]  # fmt: skip


@contextlib.contextmanager
def remote_host() -> Iterator[RemoteHost]:
    used = _used()
    for _ in range(20):
        block = ipaddress.IPv4Network(f"10.98.{secrets.randbelow(256)}.0/30")
        if not any(i.ip in block for i in used):
            break
    else:
        raise RuntimeError("no free 10.98.x.0/30 block")
    host_side, far = str(block[1]), str(block[2])
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"syrm{tag}", f"rmh{tag}", f"rmn{tag}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        _run("ip", "addr", "add", f"{host_side}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        inside = ["ip", "netns", "exec", ns]
        _run(*inside, "ip", "addr", "add", f"{far}/30", "dev", ns_if)
        _run(*inside, "ip", "link", "set", ns_if, "up")
        _run(*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Whatever reaches the far address goes on to this host, from the far address.
        _run(*inside, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", far, "-p", "tcp",
             "-j", "DNAT", "--to-destination", host_side)  # fmt: skip
        _run(*inside, "iptables", "-t", "nat", "-A", "POSTROUTING", "-d", host_side,
             "-j", "MASQUERADE")  # fmt: skip
        yield RemoteHost(far, host_side)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
