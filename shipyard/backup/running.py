"""Is a Shipyard server using this data dir? ``shipyard up`` holds a shared ``flock`` on
``<data dir>/server.lock`` for its whole life (shared: several processes may serve one data
dir); whoever wants the data dir to itself (a restore) asks for it exclusively. The kernel
drops the lock when the process dies, so a crash leaves no stale "running" state behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "server.lock"


def hold(data_dir: Path) -> int:
    """Mark the data dir in use until this process exits; returns the lock's descriptor."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def in_use(data_dir: Path) -> bool:
    path = data_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False
