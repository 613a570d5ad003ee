"""Pytest plugin (registered in tests/conftest.py): the ``database`` a test runs on, once on
SQLite and once on PostgreSQL.

A test (or a fixture it uses, such as a directory's ``settings``) that asks for ``database``
is run for both backends; ``@pytest.mark.sqlite_only`` keeps one on SQLite (it tests
SQLite's own behaviour). SQLite is a file in the test's data dir, as in production (a copy of one migrated once).
PostgreSQL is one scratch database for the whole session (tests/helpers/pg.py), migrated
once and emptied before each test: a test sees a fresh, migrated database either way, at
a few milliseconds a test instead of a CREATE DATABASE and a migration.

PostgreSQL missing: its half is skipped locally, and fails when ``CI`` is set (CI must not
pass by testing one backend).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import MetaData

from shipyard.settings import Settings, prepare
from shipyard.store.db import make_engine, migrate
from tests.helpers.pg import ADMIN_URL, scratch_database

Backend = Literal["sqlite", "postgresql"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    backend: Backend
    url: str | None  # None: Settings' default, SQLite in the data dir
    # SQLite: a database migrated once for the session, copied in as the data dir's
    # (migrating afresh costs a test ~0.1 s: SQLite rebuilds a table for each altered one).
    template: Path | None = None

    def settings(self, tmp_path: Path) -> Settings:
        """Settings for an app on this database, its data dir under ``tmp_path``."""
        data_dir = tmp_path / "data"
        if self.template is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.template, data_dir / "shipyard.db")
        return prepare(
            Settings(
                data_dir=data_dir,
                admin_token=None,
                secret_key=None,
                database_url=self.url,
            )
        )


class _Scratch:
    """The session's PostgreSQL database and what empties it between tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        with psycopg.connect(url, autocommit=True) as conn:
            # Servers often run in local time: a query that depends on the session's time
            # zone (now() cast to a date, naive timestamps) fails here, not in production.
            # An odd offset (+12:45/+13:45) that no test machine's own zone matches.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET timezone TO 'Pacific/Chatham'").format(
                    sql.Identifier(url.rsplit("/", 1)[1])
                )
            )
        engine = make_engine(url)
        try:
            migrate(engine)
            meta = MetaData()
            meta.reflect(engine)
        finally:
            engine.dispose()
        # Children first: plain DELETEs in this order satisfy every foreign key. (TRUNCATE is
        # ten times slower on small tables: it makes new files for each.)
        tables = [t.name for t in reversed(meta.sorted_tables) if t.name != "alembic_version"]
        self._deletes = [sql.SQL("DELETE FROM {}").format(sql.Identifier(t)) for t in tables]
        self._conn = psycopg.connect(url, autocommit=True)
        self._sequences = [
            str(row[0])
            for row in self._conn.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename)"
                " FROM pg_sequences WHERE schemaname = 'public'"
            )
        ]

    def reset(self) -> None:
        # Earlier tests' engines may still hold connections (an app is not always disposed):
        # end them, so none holds a lock or counts against max_connections.
        self._conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with self._conn.transaction():
            for statement in self._deletes:
                self._conn.execute(statement)
            for sequence in self._sequences:
                # Ids start at 1 again, as in a new database.
                self._conn.execute("SELECT setval(%s::regclass, 1, false)", (sequence,))

    def close(self) -> None:
        self._conn.close()


def _postgres_reachable() -> str | None:
    """None, or why the test server cannot be reached."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


@pytest.fixture(scope="session")
def postgres_scratch() -> Iterator[_Scratch]:
    why = _postgres_reachable()
    if why is not None:
        message = f"PostgreSQL at {ADMIN_URL} is unreachable: {why}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: both backends must be tested)")
        pytest.skip(message)
    with scratch_database("shipyard_suite") as url:
        scratch = _Scratch(url)
        try:
            yield scratch
        finally:
            scratch.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "shipyard.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection checkpoints the WAL into the file: one file to copy
    return path


@pytest.fixture
def postgres_url(postgres_scratch: _Scratch) -> str:
    """The session's PostgreSQL database, emptied, for tests of PostgreSQL-only features."""
    postgres_scratch.reset()
    return postgres_scratch.url


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Database:
    backend: Backend = request.param
    if backend == "sqlite":
        return Database("sqlite", None, request.getfixturevalue("sqlite_template"))
    scratch: _Scratch = request.getfixturevalue("postgres_scratch")
    scratch.reset()
    return Database("postgresql", scratch.url)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: run a test that asks for `database` on SQLite only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" not in metafunc.fixturenames:
        return
    only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
    backends = ("sqlite",) if only_sqlite else BACKENDS
    metafunc.parametrize("database", backends, indirect=True)
