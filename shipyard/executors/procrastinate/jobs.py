"""procrastinate on Shipyard's PostgreSQL: the App, its one task, its schema, and the
doorbell deferred in the same transaction as the build row.

A job is a doorbell, not the work (DESIGN.md "Running builds"): it only says "a build may be
claimable". The worker that takes it runs a dispatch pass, which claims whatever the
fairness policy lets start — so the build row and the limits stay the truth, and a lost,
duplicated or redelivered job changes nothing. ``queueing_lock`` = build id keeps at most
one waiting doorbell per build.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, SyncPsycopgConnector
from procrastinate.connector import BaseConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager
from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from shipyard.builds.status import BuildStatus
from shipyard.store.models import Build

log = logging.getLogger(__name__)

QUEUE = "shipyard-builds"
TASK = "shipyard.run_build"
# pg_advisory_xact_lock key serialising schema installs of several processes starting at once.
SCHEMA_LOCK = 0x5348_4950_5343_4845  # "SHIPSCHE"

Ring = Callable[[str], None]


class NotPostgres(ValueError):
    pass


def conninfo(database_url: str) -> str:
    """A libpq URL from SQLAlchemy's (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise NotPostgres(
            "SHIPYARD_EXECUTOR=procrastinate needs PostgreSQL: set SHIPYARD_DATABASE_URL="
            "postgresql://… (SQLite has no LISTEN/NOTIFY and no SKIP LOCKED; use the local "
            "executor with SQLite)"
        )
    return f"postgresql://{rest}"


def make_app(database_url: str, ring: Ring | None = None) -> App:
    """With ``ring``: a worker's App (async connector, run by ``JobLoop``); ``ring(build_id)``
    runs for each doorbell it takes. Without: an App that only defers, on callers' own
    connections (a sync connector: the async one, once opened, expects async connections)."""
    connector: BaseConnector = (
        PsycopgConnector(conninfo=conninfo(database_url))
        if ring is not None
        else SyncPsycopgConnector(conninfo=conninfo(database_url))
    )
    app = App(connector=connector)

    @app.task(name=TASK, queue=QUEUE)
    def run_build(build_id: str) -> None:
        if ring is not None:
            ring(build_id)

    return app


def apply_schema(database_url: str) -> bool:
    """Install procrastinate's tables once (its own ``schema.sql`` is not idempotent, so it is
    applied only when ``procrastinate_jobs`` is missing, under a lock). True if applied."""
    with psycopg.connect(conninfo(database_url)) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            return False
        conn.execute(SchemaManager.get_schema())
        conn.commit()
    log.info("applied procrastinate's schema")
    return True


def driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under the session's current transaction."""
    raw = session.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def defer(app: App, session: Session, build_id: str) -> bool:
    """Ring for ``build_id`` inside the session's transaction (committed or rolled back with
    it). False when a doorbell for it is already waiting. The INSERT runs in a savepoint:
    a queueing-lock clash must not abort the caller's transaction."""
    conn = driver_connection(session)
    try:
        # psycopg: a transaction block inside a running transaction is a SAVEPOINT. (The
        # session's own begin_nested() would flush, which a flush hook must not do.)
        with conn.transaction():
            app.tasks[TASK].configure(queueing_lock=build_id, connection=conn).defer(
                build_id=build_id
            )
    except AlreadyEnqueued:
        return False
    return True


def install_enqueue_hook(sessions: sessionmaker[Session], app: App) -> None:
    """Every QUEUED build row flushed through ``sessions`` gets its doorbell in the same
    transaction (API start, rerun, webhooks): never "commit, then hope the enqueue worked"."""

    @event.listens_for(sessions, "after_flush")
    def _ring(session: Session, _ctx: UOWTransaction) -> None:
        new = [
            obj.id
            for obj in session.new
            if isinstance(obj, Build) and obj.status == BuildStatus.QUEUED and not obj.concluded
        ]
        for build_id in new:
            defer(app, session, build_id)
