"""The FastAPI application: wiring only. Settings are built once and passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shipyard import __version__
from shipyard.api import errors, metrics
from shipyard.api.deps import AppState
from shipyard.api.limits import LimitBody
from shipyard.api.paths import NormalisePath
from shipyard.api.routers import (
    build_arguments,
    build_metrics,
    builds,
    gc,
    health,
    job_runs,
    login,
    logs,
    notifications,
    projects,
    pull_credentials,
    registry,
    repository,
    rerun,
    supply,
    tokens,
    uploads,
    webhooks,
    workers,
    workload_edit,
    workloads,
)
from shipyard.api.tail_wakeups import TailWakeups
from shipyard.builds.reseal import reseal
from shipyard.executors.base import Executor
from shipyard.notify.worker import Notifier, NotifySettings
from shipyard.registryauth import RegistryAuth
from shipyard.settings import Settings
from shipyard.store import listen
from shipyard.store.crypto import SecretBox
from shipyard.store.db import make_engine, make_sessionmaker, migrate
from shipyard.web.install import install as install_dashboard

ExecutorFactory = Callable[[Settings, sessionmaker[Session], SecretBox], Executor]


def create_app(
    settings: Settings,
    executor_factory: ExecutorFactory,
    *,
    engine: Engine | None = None,
) -> FastAPI:
    """``settings`` must have been through ``shipyard.settings.prepare`` (secrets filled)."""
    assert settings.admin_token is not None and settings.secret_key is not None
    engine = engine or make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    box = SecretBox(settings.secret_key.get_secret_value())
    reseal(sessions, box)  # seals what migration 0005 could only move (it has no key)
    executor = executor_factory(settings, sessions, box)
    notifier = _notifier(settings, sessions, box)
    wakeups = _tail_wakeups(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Fewer threads contending for the GIL and for the database (bench: AnyIO's 40).
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 8 if engine.dialect.name == "sqlite" else 16
        if wakeups is not None:
            wakeups.start()
        executor.start()
        notifier.start()
        try:
            yield
        finally:
            notifier.stop()
            executor.stop()
            if wakeups is not None:
                wakeups.stop()

    app = FastAPI(
        title="Shipyard",
        version=__version__,
        description="Self-hosted container builds behind Northflank's v1 build API.",
        lifespan=lifespan,
        # /docs is the dashboard's, from local assets (FastAPI's loads Swagger UI from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.shipyard = AppState(
        settings=settings,
        sessions=sessions,
        box=box,
        executor=executor,
        admin_token=settings.admin_token.get_secret_value(),
        wakeups=wakeups,
    )
    app.state.registry_auth = RegistryAuth.from_settings(settings)
    errors.install(app)
    for module in (
        login,
        projects,
        workloads,
        workload_edit,
        builds,
        rerun,
        logs,
        build_arguments,
        build_metrics,
        repository,
        job_runs,
        registry,
        pull_credentials,
        tokens,
        workers,
        metrics,
        gc,
        webhooks,
        notifications,
        health,
        uploads,
        supply,
    ):
        app.include_router(module.router)
    install_dashboard(app)
    app.add_middleware(LimitBody)
    app.add_middleware(NormalisePath)
    _publish_body_as_any_of(app)
    return app


def _tail_wakeups(engine: Engine) -> TailWakeups | None:
    """On PostgreSQL, live log tails wake on NOTIFY from any machine's log writers."""
    if engine.dialect.name != "postgresql":
        return None
    url = listen.libpq_url(engine.url.render_as_string(hide_password=False))
    return TailWakeups(listen.Listener(url, [listen.LOGS], name="log-tail-listener"))


def _notifier(settings: Settings, sessions: sessionmaker[Session], box: SecretBox) -> Notifier:
    """Outbound notifications (shipyard.notify), sent by a thread of the API process."""
    from shipyard.api.routers.builds import build_out

    return Notifier(
        sessions,
        box,
        NotifySettings(
            allow_private=settings.notify_allow_private_urls,
            allowed_networks=tuple(settings.build_allowed_networks),
            max_attempts=settings.notify_max_attempts,
            backoff_s=settings.notify_backoff_s,
            timeout_s=settings.notify_timeout_s,
            poll_s=settings.notify_poll_s,
        ),
        build_out,
    )


def _publish_body_as_any_of(app: FastAPI) -> None:
    """The seed documents the start-build body as ``anyOf`` (bundle | git); pydantic emits
    ``oneOf`` for our tagged union. The validation is the same; publish the seed's word."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                body = path.get("post", {}).get("requestBody", {})
                content = body.get("content", {}).get("application/json", {}).get("schema", {})
                _flatten_optional(content)
                if "oneOf" in content:
                    content["anyOf"] = content.pop("oneOf")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _flatten_optional(schema: dict[str, Any]) -> None:
    """A start-build body may be absent (``{}``): pydantic publishes ``anyOf: [<union>,
    null]``; publish the union itself (the body is optional, not nullable)."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return
    rest = [o for o in options if o != {"type": "null"}]
    if len(rest) == 1 and len(rest) < len(options):
        del schema["anyOf"]
        schema.update(rest[0])
