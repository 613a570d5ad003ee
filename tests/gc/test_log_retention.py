"""Log retention (issue 11, item 9): by age and by total size, oldest first, never a running
build's log; what went is replaced by a line saying so, which the API shows, and the build
says ``logsExpiredAt``. On SQLite the file shrinks (a database Shipyard created: incremental
auto-vacuum) or stops growing (an older one: freed pages are reused)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.gc.log_retention import LogPolicy, LogRetention
from shipyard.settings import Settings
from shipyard.store import logs as log_store
from shipyard.store.db import make_engine, make_sessionmaker, migrate
from shipyard.store.models import Build, BuildLogLine, Project, Workload
from tests.conftest import Factory

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _sessions(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.shipyard.sessions  # type: ignore[attr-defined, no-any-return]


def _build(
    factory: Factory,
    targets: dict[str, str],
    *,
    lines: int,
    concluded_days_ago: float | None,
    width: int = 40,
) -> str:
    """A build with ``lines`` log lines of ``width`` characters, concluded that long ago
    (None: still running)."""
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    build_id = str(factory.ok("POST", path, json={"branch": "main"})["id"])
    sessions = _sessions(factory.client)
    with sessions() as session:
        values: dict[str, object] = {"status": "BUILDING", "attempt": 1}
        if concluded_days_ago is not None:
            values = {
                "status": "SUCCESS",
                "concluded": True,
                "success": True,
                "attempt": 1,
                "concluded_at": NOW - timedelta(days=concluded_days_ago),
            }
        session.execute(update(Build).where(Build.id == build_id).values(**values))
        for start in range(0, lines, 5000):
            batch = [
                (NOW, f"{build_id} line {i}".ljust(width, "."))
                for i in range(start, min(lines, start + 5000))
            ]
            log_store.append(session, build_id, 1, start, batch)
        session.commit()
    return build_id


def _lines(sessions: sessionmaker[Session], build_id: str) -> int:
    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(BuildLogLine)
                .where(BuildLogLine.build_id == build_id)
            )
            or 0
        )


def _api_logs(factory: Factory, targets: dict[str, str], build_id: str) -> list[str]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build-logs"
    data = factory.ok("GET", path, params={"buildId": build_id, "lineLimit": 10000})
    return [line["log"] for line in data]  # type: ignore[attr-defined]


def _api_build(factory: Factory, targets: dict[str, str], build_id: str) -> dict[str, object]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build/{build_id}"
    return factory.ok("GET", path)


def test_age_removes_old_logs_and_the_api_says_so(
    factory: Factory, targets: dict[str, str]
) -> None:
    old = _build(factory, targets, lines=300, concluded_days_ago=40)
    recent = _build(factory, targets, lines=300, concluded_days_ago=1)
    running = _build(factory, targets, lines=300, concluded_days_ago=None)
    sessions = _sessions(factory.client)
    retention = LogRetention(sessions, LogPolicy(days=30, max_bytes=0))

    dry = retention.run(dry_run=True, now=NOW)
    assert dry.builds == [old] and _lines(sessions, old) == 300

    report = retention.run(now=NOW)
    assert report.builds == [old] and report.lines == 300
    assert _lines(sessions, recent) == 300 and _lines(sessions, running) == 300
    assert _api_logs(factory, targets, old) == [
        "… the log of this build was removed by log retention on 2026-12-04 "
        "(older than SHIPYARD_LOG_RETENTION_DAYS=30 days)"
    ]
    assert _api_build(factory, targets, old)["logsExpiredAt"] == "2026-12-04T12:00:00.000Z"
    assert "logsExpiredAt" not in _api_build(factory, targets, recent)
    assert len(_api_logs(factory, targets, recent)) == 300
    # Done once: the next run finds nothing more.
    assert retention.run(now=NOW).builds == []


def test_total_size_removes_the_oldest_first(factory: Factory, targets: dict[str, str]) -> None:
    # Three concluded builds of ~41 KB each, a cap of 100 KB: the oldest goes.
    first = _build(factory, targets, lines=1000, concluded_days_ago=3)
    second = _build(factory, targets, lines=1000, concluded_days_ago=2)
    third = _build(factory, targets, lines=1000, concluded_days_ago=1)
    sessions = _sessions(factory.client)
    report = LogRetention(sessions, LogPolicy(days=0, max_bytes=100_000)).run(now=NOW)
    assert report.builds == [first]
    assert report.bytes == 41_000 and report.kept_bytes == 82_000
    assert [_lines(sessions, b) for b in (first, second, third)] == [1, 1000, 1000]
    (marker,) = _api_logs(factory, targets, first)
    assert "SHIPYARD_LOG_RETENTION_MAX_MB=" in marker and "the oldest went first" in marker
    # Tighter: the next oldest goes too; the newest stays whatever the cap.
    report = LogRetention(sessions, LogPolicy(days=0, max_bytes=1)).run(now=NOW)
    assert report.builds == [second, third]


def _fill_and_expire(settings: Settings, url: str) -> tuple[int, int, int]:
    """File sizes: after 60k log lines, after retention removed them, after 60k more."""
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    database = Path(url.removeprefix("sqlite:///"))
    with sessions() as session:
        session.add(Project(id="p", name="p", spec={}, created_at=NOW))
        session.flush()
        workload = Workload(project_id="p", entity="service", slug="s", kind="build", name="s",
                            created_at=NOW)  # fmt: skip
        session.add(workload)
        session.flush()
        for build_id, concluded in (("b1", True), ("b2", False)):
            session.add(
                Build(id=build_id, workload_id=workload.id, status="SUCCESS" if concluded
                      else "BUILDING", concluded=concluded, success=concluded,
                      source_kind="git", created_at=NOW, attempt=1,
                      concluded_at=NOW - timedelta(days=9) if concluded else None)
            )  # fmt: skip
        session.commit()

    def fill(build_id: str) -> None:
        with sessions() as session:
            for start in range(0, 60_000, 5000):
                rows = [(NOW, "x" * 150) for _ in range(5000)]
                log_store.append(session, build_id, 1, start, rows)
            session.commit()

    fill("b1")
    engine.dispose()  # checkpoint the WAL into the file
    full = database.stat().st_size
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    LogRetention(sessions, LogPolicy(days=1, max_bytes=0)).run(now=NOW)
    engine.dispose()
    expired = database.stat().st_size
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    fill("b2")
    engine.dispose()
    refilled = database.stat().st_size
    return full, expired, refilled


def test_sqlite_file_shrinks_after_retention(settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    full, expired, refilled = _fill_and_expire(settings, url)
    print(f"new database (incremental auto-vacuum): {full} → {expired} → {refilled} bytes")
    assert expired < full // 4
    assert refilled <= full * 1.1


def test_older_sqlite_file_stops_growing(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # as Shipyard made them before: no auto-vacuum
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("CREATE TABLE legacy (x INTEGER)")
    full, expired, refilled = _fill_and_expire(settings, f"sqlite:///{path}")
    print(f"older database (no auto-vacuum): {full} → {expired} → {refilled} bytes")
    assert refilled <= full * 1.1  # the freed pages took the new lines


def test_the_garbage_collectors_hook_reports_what_went(
    factory: Factory, targets: dict[str, str]
) -> None:
    """``shipyard gc`` runs retention too; its report's ``logs`` says what (would) go."""
    _build(factory, targets, lines=10, concluded_days_ago=400)
    retention = LogRetention(_sessions(factory.client), LogPolicy(days=30, max_bytes=0))
    assert retention(True) == "the logs of 1 build(s) would be removed (410 bytes)"
    assert retention(False) == "the logs of 1 build(s) removed (10 lines, 410 bytes)"
    assert retention(False) == "the logs of 0 build(s) removed (0 lines, 0 bytes)"
