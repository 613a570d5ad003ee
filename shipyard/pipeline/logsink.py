"""Durable build logs: each line timestamped, redacted, and written in small batches
(DESIGN.md rule 5). Readers page by sequence, so a tail in another process sees lines as
soon as a batch commits.

The store may fail (disk full, a dropped database connection). Lines are only ever queued
by the caller — the thread draining git's or buildah's output never waits on the database
and never sees its errors, so the child cannot block on a full pipe. One writer thread
stores the queue, retrying with backoff (a new session, so a new or re-validated
connection, each try); when nothing could be stored for ``fail_after_s`` it reports the
failure once (the executor then stops the build with that message).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.redact import Redactor
from shipyard.store import logs as log_store
from shipyard.store.ballast import is_disk_full
from shipyard.store.write_gate import WriteGateTimeout

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 200  # lines queued that wake the writer before its interval
# Lines stored in one transaction at most: a build printing faster than small batches can be
# committed (``seq 1 2000000``) is caught up with in larger ones instead of losing lines.
MAX_STORE_BATCH = 5_000
MAX_LINE_CHARS = 8192
# Lines held while the store is failing; past this the oldest are dropped (and counted).
# A build printing faster than its lines can be stored (``seq 1 2000000``) is held in memory
# until the writer catches up; the bytes bound keeps a failing store from holding much.
MAX_PENDING = 200_000
MAX_PENDING_BYTES = 32 << 20
RETRY_MAX_S = 1.0
# A database busy with another writer (not failing) holds a build's log this long at most.
BUSY_FAIL_AFTER_S = 60.0
# Shipyard's own lines (``==> stage``) stored after the cap, at most.
MAX_LINES_AFTER_CAP = 32


@dataclass(frozen=True)
class LogLimits:
    """What one build may write to its log. Past either cap one notice is written and the
    build goes on; later lines are dropped, except Shipyard's own (``==> ...``): the stage
    and the outcome stay visible."""

    max_lines: int = 100_000
    max_bytes: int = 64 * 1024 * 1024


def is_busy(exc: BaseException) -> bool:
    """The database is working but another writer holds it (SQLite's one writer, a pool
    exhausted for a moment), as opposed to failing (disk full, connection lost)."""
    if isinstance(exc, WriteGateTimeout | PoolTimeout):
        return True
    return "database is locked" in str(getattr(exc, "orig", None) or exc).lower()


def store_failure_message(exc: BaseException, seconds: float) -> str:
    """What the build's outcome says when its log could not be stored."""
    if is_disk_full(exc):
        return "no space left on device while storing the build's log"
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    cause = first[0][:200] if first else exc.__class__.__name__
    return f"the build's log could not be stored for {seconds:g} s ({cause}); the build was stopped"


class BuildLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: str,
        attempt: int,
        redactor: Redactor,
        limits: LogLimits | None = None,
        *,
        fail_after_s: float = 5.0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._limits = limits or LogLimits()
        self._lines = 0
        self._bytes = 0
        self._truncated = False
        self._after_cap = 0
        self._sessions = sessions
        self._build_id = build_id
        self._attempt = attempt
        self._redact = redactor
        self._fail_after_s = fail_after_s
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._pending: deque[tuple[datetime, str]] = deque()
        self._pending_bytes = 0  # characters of the lines in _pending
        self._dropped = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        # Set while the writer is idle with nothing queued: ``close`` waits for it.
        self._drained = threading.Event()
        self._drained.set()
        self._give_up = threading.Event()  # close() ran out of time: stop retrying
        self._failing_since: float | None = None
        self._busy_since: float | None = None  # the database was busy with other writes
        self.failure: str | None = None  # set once: the store failed for fail_after_s
        with sessions() as session:
            self._seq = log_store.next_seq(session, build_id)
        self._writer = threading.Thread(target=self._run, name=f"logs-{build_id}", daemon=True)
        self._writer.start()

    @property
    def healthy(self) -> bool:
        """False while the store has been failing for a while: the build shows no progress
        anyone can see, so its lease is not renewed on that account."""
        since = self._failing_since
        return self.failure is None and (since is None or time.monotonic() - since < 2.0)

    def __call__(self, line: str) -> None:
        if self._truncated and not line.startswith("==> "):
            return  # past the cap: not even redacted (a 2 M-line build costs nothing more)
        text = self._redact(line)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …[truncated]"
        with self._lock:
            if self._truncated:
                # Stage and outcome lines still go in, a few: a build's own output can look
                # like them too, and must not get past the cap that way.
                if not text.startswith("==> ") or self._after_cap >= MAX_LINES_AFTER_CAP:
                    return
                self._after_cap += 1
            self._lines += 1
            self._bytes += len(text) + 1
            if not self._truncated and (
                self._lines > self._limits.max_lines or self._bytes > self._limits.max_bytes
            ):
                self._truncated = True
                limit = (
                    f"SHIPYARD_BUILD_MAX_LOG_LINES={self._limits.max_lines}"
                    if self._lines > self._limits.max_lines
                    else f"SHIPYARD_BUILD_MAX_LOG_BYTES={self._limits.max_bytes}"
                )
                text = (
                    f"… log truncated at line {self._lines - 1} ({(self._bytes - len(text) - 1)} "
                    f"bytes; {limit}): the build goes on, its further output is not stored"
                )
            while self._pending and (
                len(self._pending) >= MAX_PENDING or self._pending_bytes >= MAX_PENDING_BYTES
            ):
                self._pending_bytes -= len(self._pending.popleft()[1])
                self._dropped += 1
            self._pending.append((datetime.now(UTC), text))
            self._pending_bytes += len(text)
            self._drained.clear()
            full = len(self._pending) >= MAX_BATCH
        if full:
            self._wake.set()

    def _take(self) -> list[tuple[datetime, str]]:
        with self._lock:
            if self._dropped:
                note = (
                    f"… {self._dropped} lines were dropped: the log store was unavailable "
                    "or slower than the build's output"
                )
                self._pending.appendleft((datetime.now(UTC), note))
                self._pending_bytes += len(note)
                self._dropped = 0
            take = min(MAX_STORE_BATCH, len(self._pending))
            batch = [self._pending.popleft() for _ in range(take)]
            self._pending_bytes -= sum(len(line) for _, line in batch)
            if not batch:
                self._drained.set()
            return batch

    def _store(self, batch: list[tuple[datetime, str]]) -> None:
        """Store ``batch`` under the next sequence numbers, retrying until it is stored or the
        sink is closed for good (``_give_up``)."""
        delay = 0.05
        while True:
            try:
                with self._sessions() as session:
                    log_store.append(session, self._build_id, self._attempt, self._seq, batch)
                    session.commit()
            except Exception as exc:
                now = time.monotonic()
                if is_busy(exc):
                    # Another writer holds the database (a large delete, a backup): the store
                    # works, it is only slow. Lines wait in memory; the build fails only if
                    # that lasts BUSY_FAIL_AFTER_S.
                    if self._busy_since is None:
                        self._busy_since = now
                        log.warning("storing the log of %s waits: %s", self._build_id, exc)
                    since, limit = self._busy_since, max(self._fail_after_s, BUSY_FAIL_AFTER_S)
                else:
                    if self._failing_since is None:
                        self._failing_since = now
                        log.warning("storing the log of %s failed: %s", self._build_id, exc)
                    since, limit = self._failing_since, self._fail_after_s
                if self.failure is None and now - since >= limit:
                    self.failure = store_failure_message(exc, limit)
                    if self._on_failure is not None:
                        self._on_failure(self.failure)
                if self._give_up.is_set():
                    return
                self._give_up.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._seq += len(batch)
            self._failing_since = self._busy_since = None
            return

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._store(batch)
                continue
            if self._closed.is_set():
                return
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued line is stored (True) or ``timeout_s`` passed."""
        self._wake.set()
        return self._drained.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued (retrying for up to ``timeout_s``, or briefly once the store
        was declared failed), then stop the writer."""
        if self.failure is not None:
            timeout_s = min(timeout_s, 1.0)
        self._closed.set()
        self._wake.set()
        self._writer.join(timeout=timeout_s)
        if self._writer.is_alive():
            self._give_up.set()
            self._writer.join(timeout=2)
            with self._lock:
                lost = len(self._pending)
            if lost:
                log.error("%d log lines of %s could not be stored", lost, self._build_id)
