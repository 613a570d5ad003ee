"""Durable build logs: each line timestamped, redacted, and written in small batches
(DESIGN.md rule 5). Readers page by sequence, so a tail in another process sees lines as
soon as a batch commits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.redact import Redactor
from shipyard.store import logs as log_store

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 200
MAX_LINE_CHARS = 8192


class BuildLog:
    def __init__(
        self, sessions: sessionmaker[Session], build_id: str, attempt: int, redactor: Redactor
    ) -> None:
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
