"""Durable build logs: each line timestamped, redacted, and written in small batches
(DESIGN.md rule 5). Readers page by sequence, so a tail in another process sees lines as
soon as a batch commits."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.redact import Redactor
from shipyard.store import logs as log_store

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 200
MAX_LINE_CHARS = 8192


@dataclass(frozen=True)
class LogLimits:
    """What one build may write to its log. Past either cap one notice is written and the
    build goes on; later lines are dropped, except Shipyard's own (``==> ...``): the stage
    and the outcome stay visible."""

    max_lines: int = 100_000
    max_bytes: int = 64 * 1024 * 1024


class BuildLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: str,
        attempt: int,
        redactor: Redactor,
        limits: LogLimits | None = None,
    ) -> None:
        self._limits = limits or LogLimits()
        self._lines = 0
        self._bytes = 0
        self._truncated = False
        self._sessions = sessions
        self._build_id = build_id
        self._attempt = attempt
        self._redact = redactor
        self._lock = threading.Lock()
        self._pending: list[tuple[datetime, str]] = []
        with sessions() as session:
            self._seq = log_store.next_seq(session, build_id)
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._run, name=f"logs-{build_id}", daemon=True)
        self._flusher.start()

    def __call__(self, line: str) -> None:
        text = self._redact(line)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …[truncated]"
        with self._lock:
            if self._truncated and not text.startswith("==> "):
                return
            self._lines += 1
            self._bytes += len(text) + 1
            if not self._truncated and (
                self._lines > self._limits.max_lines or self._bytes > self._limits.max_bytes
            ):
                self._truncated = True
                text = (
                    f"… log truncated: the build's output passed {self._limits.max_lines} lines "
                    f"or {self._limits.max_bytes // (1024 * 1024)} MiB (SHIPYARD_BUILD_MAX_LOG_"
                    "LINES / _BYTES); the build goes on without logging its output"
                )
            self._pending.append((datetime.now(UTC), text))
            full = len(self._pending) >= MAX_BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            first = self._seq
            self._seq += len(batch)
            if not batch:
                return
            with self._sessions() as session:
                log_store.append(session, self._build_id, self._attempt, first, batch)
                session.commit()

    def _run(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL_S):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=5)
        self.flush()
