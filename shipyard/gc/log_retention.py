"""Log retention (issue 11, item 9): build logs are removed by age and by total size, so the
database does not grow without bound.

- a concluded build's log goes once the build concluded more than ``days`` ago;
- while the logs of concluded builds together pass ``max_bytes``, the oldest go first;
- a running build's log is never touched (each build's own log is capped while it is
  written: ``SHIPYARD_BUILD_MAX_LOG_LINES`` / ``_BYTES``, pipeline/logsink.py);
- what goes is replaced by one line saying so (every reader — range, SSE, websocket tail —
  shows it) and the build records ``logs_expired_at`` (the API's ``logsExpiredAt``).

Lines are deleted a few thousand per transaction: SQLite's one writer is free between batches
for heartbeats and build logs. On SQLite the freed pages are reused by later logs, so the file
stops growing; a database created with incremental auto-vacuum (every database Shipyard
creates) also gives them back to the file system after each run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.store import logs as log_store
from shipyard.store.models import Build, BuildLogLine

log = logging.getLogger(__name__)

DELETE_BATCH = 5_000
VACUUM_PAGES = 2_000  # pages handed back per statement (8 MiB at 4 KiB pages)
VACUUM_ROUNDS = 10_000


@dataclass(frozen=True)
class LogPolicy:
    days: float  # 0: no age limit
    max_bytes: int  # 0: no size limit

    @property
    def active(self) -> bool:
        return self.days > 0 or self.max_bytes > 0


@dataclass
class LogReport:
    dry_run: bool
    builds: list[str] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0  # log text removed (characters + newlines)
    kept_bytes: int = 0  # logs of concluded builds left
    database_before: int | None = None  # SQLite file size (bytes), None on PostgreSQL
    database_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "builds": self.builds,
            "lines": self.lines,
            "bytes": self.bytes,
            "keptBytes": self.kept_bytes,
            "databaseBytesBefore": self.database_before,
            "databaseBytesAfter": self.database_after,
        }


def expired_marker(when: datetime, reason: str) -> str:
    return f"… the log of this build was removed by log retention on {when:%Y-%m-%d} ({reason})"


class LogRetention:
    def __init__(self, sessions: sessionmaker[Session], policy: LogPolicy) -> None:
        self._sessions = sessions
        self.policy = policy
        # Its own schedule and a garbage collection's logs phase may call at once: one run
        # at a time, or both would count and expire the same builds.
        self._running = threading.Lock()

    def __call__(self, dry_run: bool) -> str:
        """The garbage collector's hook (``shipyard gc``): its report's sentence."""
        r = self.run(dry_run=dry_run)
        if dry_run:
            return f"the logs of {len(r.builds)} build(s) would be removed ({r.bytes} bytes)"
        return f"the logs of {len(r.builds)} build(s) removed ({r.lines} lines, {r.bytes} bytes)"

    def run(self, *, dry_run: bool = False, now: datetime | None = None) -> LogReport:
        with self._running:
            return self._run(dry_run, now or datetime.now(UTC))

    def _run(self, dry_run: bool, now: datetime) -> LogReport:
        report = LogReport(dry_run=dry_run, database_before=self._file_size())
        self._measure()
        with self._sessions() as session:
            rows = session.execute(
                select(Build.id, Build.concluded_at, Build.log_bytes)
                .where(Build.concluded.is_(True), Build.logs_expired_at.is_(None))
                .order_by(Build.concluded_at, Build.id)
            ).all()
        doomed: list[tuple[str, int, str]] = []
        kept = sum(int(r.log_bytes or 0) for r in rows)
        if self.policy.days > 0:
            cutoff = now - timedelta(days=self.policy.days)
            for r in rows:
                if r.concluded_at is not None and r.concluded_at < cutoff:
                    reason = f"older than SHIPYARD_LOG_RETENTION_DAYS={self.policy.days:g} days"
                    doomed.append((r.id, int(r.log_bytes or 0), reason))
                    kept -= int(r.log_bytes or 0)
        if self.policy.max_bytes > 0:
            chosen = {d[0] for d in doomed}
            mib = self.policy.max_bytes / (1 << 20)
            reason = (
                f"the stored build logs passed SHIPYARD_LOG_RETENTION_MAX_MB={mib:g}; "
                "the oldest went first"
            )
            for r in rows:
                if kept <= self.policy.max_bytes:
                    break
                if r.id in chosen or not r.log_bytes:
                    continue
                doomed.append((r.id, int(r.log_bytes), reason))
                kept -= int(r.log_bytes)
        report.kept_bytes = kept
        for build_id, size, reason in doomed:
            report.builds.append(build_id)
            report.bytes += size
            if not dry_run:
                report.lines += self._expire(build_id, expired_marker(now, reason), now)
        if not dry_run and doomed:
            self._vacuum()
        report.database_after = self._file_size()
        if doomed and not dry_run:
            log.info(
                "log retention: removed the logs of %d builds (%d lines, %d bytes)",
                len(doomed),
                report.lines,
                report.bytes,
            )
        return report

    def _measure(self) -> None:
        """Record the log size of builds concluded since the last run (one indexed query
        each); later runs sum these instead of reading every line."""
        with self._sessions() as session:
            ids = list(
                session.scalars(
                    select(Build.id).where(
                        Build.concluded.is_(True),
                        Build.log_bytes.is_(None),
                        Build.logs_expired_at.is_(None),
                    )
                )
            )
        for build_id in ids:
            with self._sessions() as session:
                size = session.scalar(
                    select(func.coalesce(func.sum(func.length(BuildLogLine.line) + 1), 0)).where(
                        BuildLogLine.build_id == build_id
                    )
                )
                session.execute(
                    update(Build).where(Build.id == build_id).values(log_bytes=int(size or 0))
                )
                session.commit()

    def _expire(self, build_id: str, marker: str, now: datetime) -> int:
        removed = 0
        while True:
            with self._sessions() as session:
                batch = list(
                    session.scalars(
                        select(BuildLogLine.id)
                        .where(BuildLogLine.build_id == build_id)
                        .limit(DELETE_BATCH)
                    )
                )
                if not batch:
                    break
                session.execute(delete(BuildLogLine).where(BuildLogLine.id.in_(batch)))
                session.commit()
            removed += len(batch)
        with self._sessions() as session:
            build = session.get(Build, build_id)
            if build is None:
                return removed
            session.execute(
                insert(BuildLogLine).values(
                    build_id=build_id,
                    attempt=build.attempt,
                    seq=log_store.next_seq(session, build_id),
                    ts=now,
                    line=marker,
                )
            )
            build.logs_expired_at = now
            build.log_bytes = len(marker) + 1
            session.commit()
        return removed

    def _sqlite_path(self) -> Path | None:
        bind = self._sessions.kw.get("bind")
        url = getattr(bind, "url", None)
        if url is None or url.get_backend_name() != "sqlite" or not url.database:
            return None
        return Path(url.database) if url.database != ":memory:" else None

    def _file_size(self) -> int | None:
        path = self._sqlite_path()
        if path is None:
            return None
        try:
            return path.stat().st_size
        except OSError:
            return None

    def _vacuum(self) -> None:
        """Give freed pages back to the file system when the database was created with
        incremental auto-vacuum (a few MiB a statement: never a long lock); otherwise they
        stay in the file and later writes reuse them."""
        if self._sqlite_path() is None:
            return
        with self._sessions() as session:
            if session.scalar(text("PRAGMA auto_vacuum")) != 2:
                return
        for _ in range(VACUUM_ROUNDS):
            with self._sessions() as session:
                if not session.scalar(text("PRAGMA freelist_count")):
                    return
                session.execute(text(f"PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                session.commit()
