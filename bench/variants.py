"""PROTOTYPES FOR THE PROFILE ONLY — not Shipyard's code path. Serves Shipyard's real app
(``create_app`` + ``executor_for``, settings from ``SHIPYARD_*``, uvicorn as ``shipyard up``
runs it) with the changes proposed in docs/benchmarks.md applied from outside, so their gain
can be measured side by side with the unchanged server. Nothing in ``shipyard/`` is edited.

``python -m bench.variants --variant async-deps,lean-insert``

- ``async-deps``: the request-scoped dependencies ``app_state``, ``db_session`` and
  ``caller`` become ``async def`` (none of them blocks: a Session connects lazily, the admin
  token is a constant-time compare; a stored API token is still looked up, in the thread
  pool), so a start-build request takes one thread-pool hop (the endpoint) instead of five
  (app_state, db_session enter and exit, caller, endpoint).
- ``lean-insert``: ``builds.service.start`` without an Idempotency-Key writes one
  statement: the id is drawn first, the overrides are sealed before the INSERT, and an id
  clash is handled by ``INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`` + retry instead
  of a ``session.get`` pre-check and a SAVEPOINT. With a key, the current path runs.
- ``threads-N``: the AnyIO thread-pool limit set to N (default 40).
- ``sqlite-pool-1``: SQLite only: the engine's pool holds one connection (``pool_size=1,
  max_overflow=0``), so transactions queue in Python (woken at once when the connection is
  returned) instead of colliding on SQLite's write lock, whose busy handler sleeps 1, 2, 5,
  10, … 100 ms between retries.
"""

from __future__ import annotations

import argparse
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from starlette.concurrency import run_in_threadpool

from shipyard.api import deps
from shipyard.api.app import create_app
from shipyard.api.auth import Principal, authenticate, bearer
from shipyard.builds import service as build_service
from shipyard.builds.ids import new_build_id
from shipyard.builds.permissions import ALL
from shipyard.builds.status import BuildStatus
from shipyard.executors.runtime import executor_for
from shipyard.settings import Settings, prepare
from shipyard.store.models import Build

VARIANTS = ("async-deps", "lean-insert", "sqlite-pool-1")


def apply_async_deps(app: FastAPI) -> None:
    admin = Principal("admin", frozenset(p.value for p in ALL), None)

    async def app_state(request: Request) -> deps.AppState:
        state: deps.AppState = request.app.state.shipyard
        return state

    async def db_session(request: Request) -> AsyncIterator[Session]:
        session = request.app.state.shipyard.sessions()  # no connection until first use
        try:
            yield session
        finally:
            if session.in_transaction():
                await run_in_threadpool(session.close)
            else:
                session.close()

    async def caller(request: Request) -> Principal:
        state: deps.AppState = request.app.state.shipyard
        token = bearer(request.headers.get("authorization"))
        if token is not None and hmac.compare_digest(token.encode(), state.admin_token.encode()):
            return admin

        def lookup() -> Principal:
            with state.sessions() as session:
                return authenticate(session, token, state.admin_token)

        return await run_in_threadpool(lookup)

    app.dependency_overrides[deps.app_state] = app_state
    app.dependency_overrides[deps.db_session] = db_session
    app.dependency_overrides[deps.caller] = caller


def apply_lean_insert() -> None:
    original = build_service.start
    table = Build.__table__

    def start(session: Session, box: Any, workload: Any, request: Any, *,
              idempotency_key: str | None = None, fingerprint: str | None = None,
              **_: Any) -> Any:  # fmt: skip  (max_queued: benches lift the cap)
        if idempotency_key is not None:
            return original(session, box, workload, request,
                            idempotency_key=idempotency_key, fingerprint=fingerprint)  # fmt: skip
        source, docker = request.source, request.overrides.docker
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        secret_json = request.overrides.to_secret_json()
        for _ in range(20):
            build_id = new_build_id()
            values = dict(
                id=build_id,
                workload_id=workload.id,
                status=BuildStatus.QUEUED,
                concluded=False,
                success=False,
                source_kind=source.kind,
                sha=source.sha,
                requested_sha=source.sha,
                branch=source.branch,
                pull_request_id=source.pull_request_id,
                bundle_url=source.bundle_url,
                dockerfile_path=docker.dockerfile_path,
                docker_work_dir=docker.work_dir,
                docker_target=docker.target,
                idempotency_key=None,
                request_fingerprint=fingerprint,
                created_at=datetime.now(UTC),
                attempt=0,
                abort_requested=False,
                # The id is known before the INSERT, so the overrides are sealed (bound to
                # it) up front: no second UPDATE.
                overrides_enc=box.seal(secret_json, build_service.build_context(build_id)),
            )
            # One statement; an id clash (the id space is 30 M) inserts nothing and retries.
            inserted = session.execute(
                insert(table).values(**values)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(table.c.id)
            ).first()  # fmt: skip
            if inserted is not None:
                return Build(**values), True  # transient: only read for the response
        raise RuntimeError("could not allocate a unique build id")

    build_service.start = start  # type: ignore[assignment]


def sqlite_engine_pool_1(url: str) -> Engine:
    """``shipyard.store.db.make_engine`` for SQLite, with a one-connection pool."""
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=30,
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=30000"):  # fmt: skip
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    return engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--variant", default="", help=f"comma-separated: {', '.join(VARIANTS)}, threads-N"
    )
    args = parser.parse_args()
    chosen = [v for v in args.variant.split(",") if v]
    settings = prepare(Settings())
    if "lean-insert" in chosen:
        apply_lean_insert()
    engine = None
    if "sqlite-pool-1" in chosen and settings.resolved_database_url.startswith("sqlite"):
        engine = sqlite_engine_pool_1(settings.resolved_database_url)
    app = create_app(settings, executor_for, engine=engine)
    if "async-deps" in chosen:
        apply_async_deps(app)
    threads = next((int(v.split("-", 1)[1]) for v in chosen if v.startswith("threads-")), None)
    if threads is not None:
        inner = app.router.lifespan_context

        async def lifespan(a: FastAPI) -> AsyncIterator[None]:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
            async with inner(a):
                yield

        from contextlib import asynccontextmanager

        app.router.lifespan_context = asynccontextmanager(lifespan)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
