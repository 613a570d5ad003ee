"""The push gate of a scale-out fleet: one PostgreSQL advisory lock that every worker's push
holds shared and the registry's garbage collection holds exclusive, so a collection waits for
the pushes of every machine and holds new ones back while the registry is read-only.

PostgreSQL queues a shared request behind a waiting exclusive one (its lock manager checks
the wait queue too, try-locks included): a steady stream of pushes cannot starve a
collection, as with the in-process ``PushGate``. Each hold is a connection of its own; a
worker that dies drops its connection, and its hold with it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

import psycopg

from shipyard.pipeline.errors import PushFailed, short_cause

# One key for the whole database (the advisory-lock space is per database).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"shipyard:registry-push-gate").digest()[:8], "big",
                          signed=True)  # fmt: skip


class FleetPushGate:
    def __init__(self, conninfo: str, *, connect_timeout_s: int = 10) -> None:
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s

    @contextlib.contextmanager
    def pushing(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """``on_wait`` is called once when the push has to wait (to say so in the log). A
        database that cannot be reached fails the push with that reason (``PushFailed``),
        not as an internal error."""
        with self._held() as conn:
            try:
                row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (LOCK_KEY,)).fetchone()
                if not (row and row[0]):
                    if on_wait is not None:
                        on_wait()
                    conn.execute("SELECT pg_advisory_lock_shared(%s)", (LOCK_KEY,))
            except psycopg.Error as exc:
                raise _unreachable(exc) from exc
            yield

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[None]:
        with self._held() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            yield

    @contextlib.contextmanager
    def _held(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection closed on the way out, which releases its lock. Never a commit: one
        that failed after a finished push (the database went away) must not fail the push."""
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name="shipyard push gate",
            )
        except psycopg.Error as exc:
            raise _unreachable(exc) from exc
        try:
            yield conn
        finally:
            conn.close()


def _unreachable(exc: psycopg.Error) -> PushFailed:
    return PushFailed(
        "the fleet's push gate could not be taken (the database did not answer): "
        + short_cause(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    )
