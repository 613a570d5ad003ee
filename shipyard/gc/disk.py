"""Disk use of Shipyard's parts, for ``/metrics`` and for what a collection freed."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_DU_TIMEOUT_S = 120.0


def usage(path: Path) -> int:
    """Bytes allocated under ``path`` (``du``: blocks, not apparent sizes; hard links once),
    staying on its file system. 0 when it does not exist."""
    if not path.exists():
        return 0
    done = subprocess.run(
        ["du", "-s", "-x", "-B1", "--", str(path)],
        capture_output=True, text=True, timeout=_DU_TIMEOUT_S, check=False,
    )  # fmt: skip
    # du exits 1 when a file vanished during the walk (a build running): the sum still counts.
    first = done.stdout.split(maxsplit=1)
    return int(first[0]) if first and first[0].isdigit() else 0


def total(paths: Iterable[Path]) -> int:
    return sum(usage(p) for p in paths)


def store_dirs(sandbox_root: Path) -> list[Path]:
    """Every project's buildah store under the sandbox root (``<user>/store``; each on its
    project's own disk, so measured one by one)."""
    return sorted(sandbox_root.glob("*/store")) if sandbox_root.is_dir() else []


class Cached:
    """A measurement taken at most every ``ttl_s`` seconds: ``du`` over a large store takes
    seconds, and Prometheus scrapes every few."""

    def __init__(self, measure: Callable[[], dict[str, float]], ttl_s: float = 60.0) -> None:
        self._measure = measure
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: dict[str, float] | None = None
        self._at = 0.0

    def get(self) -> dict[str, float]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self._ttl_s:
                self._value = self._measure()
                self._at = time.monotonic()
            return dict(self._value)
