"""``shipyard worker``: a scale-out build worker (SHIPYARD_EXECUTOR=procrastinate;
docs/workers.md). It needs the API's database (migrated by ``shipyard up``) and secret key."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from shipyard.cli.startup import require_postgres, start_process
from shipyard.settings import Settings, prepare

console = Console(stderr=True)


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Builds this worker runs at once (default SHIPYARD_MAX_CONCURRENT_BUILDS)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's /metrics on 127.0.0.1:PORT")
    ] = None,
) -> None:
    """Run builds from the shared PostgreSQL queue until SIGTERM (then claim nothing more,
    let running builds finish for SHIPYARD_WORKER_GRACE_S, hand back the rest)."""
    configured = start_process(console)
    if configured.executor != "procrastinate":
        console.print("shipyard worker needs SHIPYARD_EXECUTOR=procrastinate (docs/workers.md)")
        raise typer.Exit(2)
    require_postgres(configured, console)
    if configured.secret_key is None and not (configured.data_dir / "secret-key").exists():
        # A key of its own would not open the builds' sealed secrets, nor sign registry
        # credentials the API's token endpoint accepts.
        console.print(
            "set SHIPYARD_SECRET_KEY to the API's key (the secret-key file in its data dir)"
        )
        raise typer.Exit(2)
    settings = prepare(configured)
    check_registry(settings)
    run(settings, concurrency or settings.max_concurrent_builds, metrics_port)


def check_registry(settings: Settings) -> None:
    """A worker on another machine (``SHIPYARD_REGISTRY_AUTH=shipyard``): refuse to start
    when the API's token endpoint refuses its credential (a wrong secret key would fail every
    build it takes); warn when it cannot tell (the API may be starting too)."""
    from shipyard.registryauth import realm
    from shipyard.registryauth.probe import probe
    from shipyard.registryauth.targets import own_target, shipyard_token_auth

    if not shipyard_token_auth(settings):
        return
    target = own_target(settings, None)
    assert target is not None
    result = probe(target, realm(settings))
    if result.refused:
        console.print(result.message, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    if not result.ok:
        console.print(f"warning: {result.message}", soft_wrap=True, markup=False)


def run(settings: Settings, concurrency: int, metrics_port: int | None) -> None:
    from shipyard.executors.procrastinate.worker import Worker
    from shipyard.store.crypto import SecretBox
    from shipyard.store.db import make_engine, make_sessionmaker

    assert settings.secret_key is not None
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    box = SecretBox(settings.secret_key.get_secret_value())
    node = Worker(settings, sessions, box, concurrency=concurrency, metrics_port=metrics_port)
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        signals.append(sig)
        if len(signals) > 1:
            os._exit(1)  # a second signal: now (the builds' groups die with their sandbox)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node.start()
    console.print(
        f"[bold]Shipyard worker[/] {node.worker_id}: {concurrency} slots"
        + (f", metrics on 127.0.0.1:{node.metrics_port}" if node.metrics_port else ""),
        soft_wrap=True,
    )
    stop.wait()
    console.print(f"stopping: running builds have {settings.worker_grace_s:g} s, then go back")
    node.drain(settings.worker_grace_s)
    node.stop()
    sessions.kw["bind"].dispose()
