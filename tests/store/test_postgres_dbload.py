"""Issue 11's database pieces on PostgreSQL: the executor's own engine, ``/readyz``'s write
probe and log retention (a fresh database on the machine's PostgreSQL, trust auth)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.gc.log_retention import LogPolicy, LogRetention
from shipyard.settings import Settings, prepare
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store.db import worker_sessions
from shipyard.store.models import Build, BuildLogLine

ADMIN_URL = os.environ.get("SHIPYARD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg_client(tmp_path: Path) -> Iterator[TestClient]:
    name = f"shipyard_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        settings = prepare(Settings(data_dir=tmp_path / "data", database_url=url))
        with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
            assert settings.admin_token is not None
            client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
            yield client
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _build(client: TestClient) -> str:
    client.post("/v1/projects", json={"name": "pg"})
    client.post(
        "/v1/projects/pg/services/build", json={"name": "s", "vcsData": {"projectUrl": "file:///r"}}
    )
    r = client.post("/v1/projects/pg/services/s/build", json={"branch": "main"})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


def test_readyz_and_the_worker_engine_on_postgres(pg_client: TestClient) -> None:
    r = pg_client.get("/readyz", headers={"Authorization": ""})
    assert r.status_code == 200 and r.json()["checks"] == {"database": {"ok": True}}
    build_id = _build(pg_client)
    sessions: sessionmaker[Session] = pg_client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    worker = worker_sessions(sessions)
    try:
        with worker() as session:
            assert build_store.claim(session, build_id, "w:1") == 1
            session.commit()
        with worker() as session:
            assert build_store.heartbeat(session, build_id, 1) is False
            session.commit()
    finally:
        worker.kw["bind"].dispose()


def test_log_retention_on_postgres(pg_client: TestClient) -> None:
    build_id = _build(pg_client)
    sessions: sessionmaker[Session] = pg_client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        session.execute(
            update(Build)
            .where(Build.id == build_id)
            .values(status="SUCCESS", concluded=True, success=True, attempt=1,
                    concluded_at=NOW - timedelta(days=40))
        )  # fmt: skip
        log_store.append(session, build_id, 1, 0, [(NOW, f"line {i}") for i in range(12_000)])
        session.commit()
    report = LogRetention(sessions, LogPolicy(days=30, max_bytes=0)).run(now=NOW)
    assert report.builds == [build_id] and report.lines == 12_000
    assert report.database_before is None  # not a file
    with sessions() as session:
        lines = list(
            session.scalars(select(BuildLogLine.line).where(BuildLogLine.build_id == build_id))
        )
        assert session.scalar(select(func.count()).select_from(BuildLogLine)) == 1
    assert len(lines) == 1 and "removed by log retention" in lines[0]
    got = pg_client.get(f"/v1/projects/pg/services/s/build/{build_id}").json()["data"]
    assert got["logsExpiredAt"] == "2026-12-04T12:00:00.000Z"
