"""Scratch PostgreSQL databases for tests (the server at 127.0.0.1:5432 on every dev and CI
machine, trust auth; ``SHIPYARD_TEST_POSTGRES`` names another)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg

ADMIN_URL = os.environ.get("SHIPYARD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


@contextlib.contextmanager
def scratch_database(prefix: str = "shipyard_test") -> Iterator[str]:
    """A new empty database for the block; its URL. Dropped afterwards, connections or not."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
