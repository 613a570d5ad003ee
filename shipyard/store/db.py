"""Engine and sessions; migrations are applied at start, never ``create_all``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shipyard.store import write_gate

MIGRATIONS = Path(__file__).parent / "migrations"


# Request handlers: AnyIO's worker threads (8 on SQLite, app.py) each hold at most one
# connection, plus live log streams polling; a request never waits for a connection while
# another waits for a thread (issue 11: the one-connection pool froze the server for 60 s).
SQLITE_POOL = 8
SQLITE_OVERFLOW = 24
# The executor's engine (heartbeats, claims, outcomes, build logs): its own connections, and
# short bounded waits — a heartbeat that cannot be written is retried on the next tick.
WORKER_POOL = 4
WORKER_OVERFLOW = 16
WORKER_WAIT_S = 5.0
REQUEST_WAIT_S = 30.0


def make_engine(url: str, *, worker: bool = False) -> Engine:
    """An engine for API requests, or (``worker``) for the executor's own writes, which never
    queue behind requests: separate connections, and first in line for SQLite's one writer
    (``write_gate``)."""
    if url.startswith("sqlite"):
        wait_s = WORKER_WAIT_S if worker else REQUEST_WAIT_S
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": wait_s},
            pool_size=WORKER_POOL if worker else SQLITE_POOL,
            max_overflow=WORKER_OVERFLOW if worker else SQLITE_OVERFLOW,
            pool_timeout=wait_s,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes logs; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            # A new database only (setting it later needs a VACUUM, and the pragma waits for
            # the write lock): log retention then gives freed pages back to the file system
            # (shipyard/gc/log_retention.py).
            if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
                cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
            cur.close()

        database = engine.url.database
        if database and database != ":memory:":
            write_gate.install(
                engine,
                write_gate.gate_for(str(Path(database).resolve())),
                urgent=worker,
                timeout_s=wait_s,
            )
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if worker:
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=WORKER_POOL,
            max_overflow=WORKER_OVERFLOW,
            pool_timeout=WORKER_WAIT_S,
        )
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def worker_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on a separate engine for the executor, on the same database as ``sessions``."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine)
    url = engine.url.render_as_string(hide_password=False)
    return make_sessionmaker(make_engine(url, worker=True))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
