"""A build's namespace may hold at most ``LOOPBACK_CONNECTIONS`` connections to the host's
registry and API (reached through DNAT): a RUN step opening connections without end cannot
starve the services every project shares. Real namespace, real iptables (root only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from shipyard.sandbox import network
from shipyard.sandbox.network import BuildNetwork, Loopback

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None, reason="needs root and iptables"
)

_CLIENT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held, refused = [], 0
for _ in range(count):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
    except OSError:
        refused += 1
print(len(held), refused)
"""


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A loopback service that accepts and holds every connection; records peers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=512)
    peers: list[str] = []
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            peers.append(peer[0])
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1], peers
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_build_holds_at_most_the_cap_of_loopback_connections(
    listener: tuple[int, list[str]],
) -> None:
    port, peers = listener
    network.install_host_rules()
    net = BuildNetwork(f"rn{uuid.uuid4().hex[:6]}", "cap-test", Loopback((port,)))
    net.create()
    try:
        wanted = network.LOOPBACK_CONNECTIONS + 20
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{net.name}", "--", "python3", "-c", _CLIENT,
             str(port), str(wanted)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        held, refused = map(int, done.stdout.split())
        assert held == network.LOOPBACK_CONNECTIONS
        assert refused == 20
        assert set(peers) == {net.ns_ip}  # through the DNAT, from the build's address
    finally:
        net.destroy()
    rules = subprocess.run(["iptables", "-w", "5", "-S", network.CHAIN_IN], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert net.host_if not in rules
