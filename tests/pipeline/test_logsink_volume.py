"""A build's log under volume (issue 11, item 9): lines up to the cap are all stored however
fast they come (the writer catches up in larger batches), the cap is marked once with where
and which limit, later output is dropped, and lines that look like Shipyard's own (``==> …``)
cannot carry output past the cap."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pytest import MonkeyPatch
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.logsink import MAX_LINES_AFTER_CAP, BuildLog, LogLimits
from shipyard.pipeline.redact import Redactor
from shipyard.settings import Settings
from shipyard.store import db
from shipyard.store.models import Build, BuildLogLine
from tests.conftest import Factory
from tests.helpers.databases import Database


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    """The log writer on SQLite and on PostgreSQL (tests/helpers/databases.py)."""
    return database.settings(tmp_path)


def _stored(sessions: sessionmaker[Session], build_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(BuildLogLine.line)
                .where(BuildLogLine.build_id == build_id)
                .order_by(BuildLogLine.seq)
            )
        )


def test_a_flood_is_stored_up_to_the_cap_then_marked(
    client: TestClient, factory: Factory, targets: dict[str, str]
) -> None:
    sessions: sessionmaker[Session] = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    build_id = str(factory.ok("POST", path, json={"branch": "main"})["id"])
    sink = BuildLog(sessions, build_id, 1, Redactor([]), LogLimits(max_lines=150_000))
    for i in range(400_000):  # as fast as a loop can: far faster than single-row commits
        sink(str(i))
    for i in range(100):
        sink(f"==> not shipyard {i}")
    sink.close(timeout_s=120)
    lines = _stored(sessions, build_id)
    assert lines[:150_000] == [str(i) for i in range(150_000)]  # none dropped
    assert lines[150_000] == (
        "… log truncated at line 150000 (938890 bytes; SHIPYARD_BUILD_MAX_LOG_LINES=150000): "
        "the build goes on, its further output is not stored"
    )
    assert len(lines) == 150_001 + MAX_LINES_AFTER_CAP


def test_a_database_busy_with_another_writer_is_waited_for_not_failed(
    client: TestClient, factory: Factory, targets: dict[str, str], monkeypatch: MonkeyPatch
) -> None:
    """A long write elsewhere (deleting a large service's logs takes seconds on SQLite)
    holds the database longer than the log store's failure limit: the build's lines wait in
    memory and are stored after it; the build is not failed for it."""
    sessions: sessionmaker[Session] = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    build_id = str(factory.ok("POST", path, json={"branch": "main"})["id"])
    monkeypatch.setattr(db, "WORKER_WAIT_S", 0.2)
    worker = db.worker_sessions(sessions)
    failures: list[str] = []
    sink = BuildLog(worker, build_id, 1, Redactor([]), fail_after_s=0.5, on_failure=failures.append)
    with sessions() as hog:  # an API transaction holding SQLite's writer for 2 s
        hog.execute(update(Build).where(Build.id == build_id).values(message="busy"))
        for i in range(50):
            sink(f"line {i}")
        sink.flush(timeout_s=2)
        hog.commit()
    sink.close(timeout_s=30)
    worker.kw["bind"].dispose()
    assert failures == [] and sink.failure is None
    assert _stored(sessions, build_id) == [f"line {i}" for i in range(50)]
