"""A reserve of disk space next to the SQLite database, given up when the disk is full.

When the disk under the database fills (a build's chatter, another program), SQLite can
write nothing — not even the one-row UPDATE that ends a build. Shipyard keeps a file of
``size`` bytes beside the database and deletes it the moment a write fails for lack of
space, so the outcome of the builds involved can still be recorded; it is put back once
the disk has room again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_FULL = ("disk is full", "no space left", "diskfull", "disk full", "errno 28")


def is_disk_full(exc: BaseException) -> bool:
    text = f"{exc} {getattr(exc, 'orig', '')}".lower()
    return any(s in text for s in _FULL)


class Ballast:
    def __init__(self, path: Path | None, size: int) -> None:
        self.path = path
        self.size = size
        self._lock = threading.Lock()

    @classmethod
    def for_database(cls, url: str, size: int) -> Ballast:
        """Beside a SQLite file; none for other databases (their disks are not ours)."""
        if size <= 0 or not url.startswith("sqlite:///"):
            return cls(None, 0)
        db = Path(url.removeprefix("sqlite:///"))
        return cls(db.parent / ".shipyard-disk-reserve", size)

    def ensure(self) -> None:
        """Create the reserve if it is missing and the disk has room for it and more."""
        if self.path is None:
            return
        with self._lock:
            if self.path.exists():
                return
            try:
                stat = os.statvfs(self.path.parent)
                if stat.f_bavail * stat.f_frsize < 4 * self.size:
                    return
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.size)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("cannot keep a disk reserve at %s: %s", self.path, exc)
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def release(self) -> bool:
        """Give the reserve up (the disk is full). True if there was one to give."""
        if self.path is None:
            return False
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
        log.error(
            "the disk under the database is full: released the %d MiB reserve so builds can "
            "still be concluded; free some space",
            self.size >> 20,
        )
        return True
