"""Which destinations a build may not reach: the host, private and special-purpose ranges.

One list for every fetch a build makes (RUN steps, base-image pulls, git, bundles). The
host's own addresses are not listed: the network namespace cannot reach them at all
(traffic for a local address is INPUT, which drops everything but the registry and token
endpoint).
"""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DENIED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this" network
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
DENIED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "::ffff:0:0/96",  # IPv4-mapped: would bypass the IPv4 list
        "64:ff9b::/96",  # NAT64 of any IPv4 address
        "fc00::/7",  # unique local (ULA)
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


def is_denied(address: str | IPAddress) -> bool:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return True
    networks: tuple[IPNetwork, ...] = DENIED_V4 if ip.version == 4 else DENIED_V6
    return any(ip in net for net in networks)
