"""The database's snapshot: SQLite through its online backup API (consistent while the server
writes, WAL included), PostgreSQL through ``pg_dump``/``pg_restore``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from shipyard.builds.errors import InvalidRequest

PG_TIMEOUT_S = 3600.0


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise InvalidRequest("an in-memory SQLite database has nothing to back up")
    return Path(parsed.database)


def snapshot_sqlite(database: Path, out: Path) -> None:
    if not database.exists():
        raise InvalidRequest(f"no database at {database}")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(out)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def install_sqlite(snapshot: Path, database: Path) -> None:
    """Put ``snapshot`` in place of ``database`` (same directory: an atomic rename). The old
    database's WAL and shared-memory files go first: SQLite would replay them onto the
    restored file."""
    check = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise InvalidRequest("the archive's database fails SQLite's integrity check")
    finally:
        check.close()
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    os.chmod(snapshot, 0o600)
    os.replace(snapshot, database)


def _pg_environment(url: str) -> dict[str, str]:
    """libpq's variables: the password never appears on a command line (``ps``)."""
    parsed = make_url(url)
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password if isinstance(parsed.password, str) else None,
        "PGDATABASE": parsed.database,
    }
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    return {**base, **{k: v for k, v in values.items() if v}}


def _pg_tool(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        raise InvalidRequest(
            f"{name} is not installed: install postgresql-client, or back up PostgreSQL "
            "with your own pg_dump (the archive then holds only the keys)"
        )
    return tool


def dump_postgres(url: str, out: Path) -> None:
    # --format=custom: compressed, and pg_restore can clean what it replaces.
    done = subprocess.run(
        [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out)],
        env=_pg_environment(url),
        capture_output=True,
        text=True,
        timeout=PG_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise InvalidRequest(f"pg_dump failed: {done.stderr.strip()[-2000:]}")


def restore_postgres(url: str, dump: Path) -> None:
    done = subprocess.run(
        [
            _pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--dbname",
            make_url(url).database or "",
            str(dump),
        ],
        env=_pg_environment(url),
        capture_output=True,
        text=True,
        timeout=PG_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise InvalidRequest(f"pg_restore failed: {done.stderr.strip()[-2000:]}")
