"""Small networking helpers shared by the embedded services and the tests."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``.

    The kernel picks it (bind to port 0), so parallel callers rarely collide; the port is
    released before it is returned, so a caller must still handle "address in use" when it
    binds (the embedded registry reports that as a start-up error).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
