"""The start of a long-running Shipyard process (``shipyard up``, ``shipyard worker``):
process-wide defaults, then settings, with a one-line message and exit 2 when they are bad."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console

from shipyard.settings import Settings, SettingsError
from shipyard.settings import load as load_settings


def start_process(console: Console) -> Settings:
    # Everything Shipyard creates is its own unless it says otherwise (the DB and its WAL,
    # registry storage, logs): build users read only what is explicitly handed to them.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("shipyard").setLevel(logging.INFO)
    try:
        return load_settings()
    except SettingsError as exc:
        console.print(str(exc), soft_wrap=True, markup=False)
        raise typer.Exit(2) from None


def require_postgres(settings: Settings, console: Console) -> None:
    """The procrastinate executor runs on PostgreSQL only."""
    from shipyard.executors.procrastinate.jobs import NotPostgres, conninfo

    try:
        conninfo(settings.resolved_database_url)
    except NotPostgres as exc:
        console.print(str(exc), soft_wrap=True)
        raise typer.Exit(2) from None
