"""Backup and restore: the archive (0600, the database and the keys), a round trip that keeps
sealed secrets readable on SQLite and PostgreSQL, and a running server's data left alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.backup import archive, running
from shipyard.builds.errors import Conflict, InvalidRequest
from shipyard.executors.base import NullExecutor
from shipyard.registryauth.keys import KEY_FILE, auth_dir
from shipyard.settings import Settings, prepare
from tests.helpers.pg import ADMIN_URL

SECRET = "hunter2-sealed-value"


def serve(settings: Settings) -> TestClient:
    client = TestClient(create_app(settings, lambda *_: NullExecutor()))
    assert settings.admin_token is not None
    client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
    return client


def seed(client: TestClient) -> str:
    """A project and a service with a stored (sealed) build argument; returns its path."""
    assert client.post("/v1/projects", json={"name": "demo"}).status_code == 200
    body = {
        "name": "web",
        "vcsData": {"projectUrl": "file:///nowhere", "projectType": "self-hosted"},
        "buildArguments": {"TOKEN": SECRET},
    }
    assert client.post("/v1/projects/demo/services/build", json=body).status_code == 200
    return "/v1/projects/demo/services/web/build-arguments"


def stored_secret(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["buildArguments"]["TOKEN"])


def round_trip(tmp_path: Path, source: Settings, target: Settings) -> None:
    with serve(source) as client:
        path = seed(client)
        # Taken while the server holds its database open (SQLite: WAL mode, one connection).
        report = archive.backup(source, tmp_path / "backup.tar.gz")
    assert stat.S_IMODE(report.path.stat().st_mode) == 0o600
    with tarfile.open(report.path) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "keys/secret-key", "keys/admin-token"} <= names
    assert f"keys/registry-auth/{KEY_FILE}" in names
    restored = archive.restore(target, report.path)
    assert "secret-key" in restored.files
    ready = prepare(target)
    # The restored keys are the ones in use: same admin token, same secret key.
    assert ready.admin_token == source.admin_token and ready.secret_key == source.secret_key
    assert stat.S_IMODE((target.data_dir / "secret-key").stat().st_mode) == 0o600
    with serve(ready) as client:
        assert stored_secret(client, path) == SECRET


@pytest.fixture
def source(tmp_path: Path) -> Settings:
    settings = prepare(Settings(data_dir=tmp_path / "a", admin_token=None, secret_key=None))
    # The registry's signing key is made when the registry starts; a stand-in here.
    auth_dir(settings.data_dir).mkdir(mode=0o700)
    (auth_dir(settings.data_dir) / KEY_FILE).write_bytes(b"-----BEGIN EC PRIVATE KEY-----\n")
    with serve(settings):  # the database, migrated
        pass
    return settings


def test_sqlite_round_trip_into_a_fresh_data_dir(tmp_path: Path, source: Settings) -> None:
    target = Settings(data_dir=tmp_path / "b", admin_token=None, secret_key=None)
    round_trip(tmp_path, source, target)
    assert (target.data_dir / "registry-auth" / KEY_FILE).read_bytes().startswith(b"-----BEGIN")
    # The copy gets an instance id of its own: its build users never collide with the source's.
    ids = [(s.data_dir / "instance-id").read_text() for s in (source, target)]
    assert ids[0] != ids[1]


@pytest.fixture
def pg_urls() -> Iterator[tuple[str, str]]:
    names = [f"shipyard_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_round_trip(tmp_path: Path, pg_urls: tuple[str, str]) -> None:
    first, second = pg_urls
    source = prepare(Settings(data_dir=tmp_path / "a", database_url=first))
    target = Settings(data_dir=tmp_path / "b", database_url=second)
    round_trip(tmp_path, source, target)


def test_restore_refuses_a_running_servers_data(tmp_path: Path, source: Settings) -> None:
    backup = archive.backup(source, tmp_path / "b.tar.gz").path
    before = (source.data_dir / "shipyard.db").read_bytes()
    # Another process serves the data dir (as `shipyard up` does): the lock is held.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from shipyard.backup import running; "
            "running.hold(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            str(source.data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert running.in_use(source.data_dir)
        with pytest.raises(Conflict, match="running"):
            archive.restore(source, backup)
        assert (source.data_dir / "shipyard.db").read_bytes() == before
        archive.restore(source, backup, force=True)  # the operator's call
    finally:
        holder.kill()
        holder.wait()
    assert not running.in_use(source.data_dir)  # the kernel dropped the lock with the process
    # Restoring over existing data keeps what it replaced.
    report = archive.restore(source, backup)
    assert any(".before-restore-" in kept for kept in report.moved_aside)


def test_restore_rejects_what_is_not_a_backup(tmp_path: Path, source: Settings) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(InvalidRequest, match="cannot read"):
        archive.restore(source, junk)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(InvalidRequest, match=r"manifest\.json is missing"):
        archive.restore(source, empty)
    assert os.listdir(source.data_dir)  # untouched
