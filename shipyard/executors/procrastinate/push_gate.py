"""The push gate of a scale-out fleet: one PostgreSQL advisory lock that every worker's push
holds shared and the registry's garbage collection holds exclusive, so a collection waits for
the pushes of every machine and holds new ones back while the registry is read-only.

PostgreSQL queues a shared request behind a waiting exclusive one (its lock manager checks
the wait queue too, try-locks included): a steady stream of pushes cannot starve a
collection, as with the in-process ``PushGate``.

Each hold is a connection of its own, and a hold ends with its connection. A worker process
that dies closes it at once; a worker *machine* that dies (power, network) leaves a
half-open connection that the server only notices through TCP keepalives, so every gate
connection asks the server for short ones (about a minute and a half to notice), and a
collection gives up after ``maintenance_wait_s`` instead of holding back every push behind a
hold that may never end. A hold can also end under its holder (the server restarted, the
session was terminated): a push or collection that finds it gone fails instead of reporting
success for work that ran unguarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shipyard.pipeline.errors import PushFailed, short_cause
from shipyard.pipeline.push_gate import GateLost, GateUnavailable, give_up_waiting

# One key for the whole database (the advisory-lock space is per database).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"shipyard:registry-push-gate").digest()[:8], "big",
                          signed=True)  # fmt: skip

# How often a waiting push asks again. A waiting push polls with a try-lock instead of
# queueing: it can then stop on abort or timeout, and a try-lock still yields to a waiting
# collection.
_POLL_S = 0.5

# The server drops a peer that stops answering: 30 s idle, then 3 probes 10 s apart; data
# unacknowledged for 60 s ends the connection too. Statement, session and transaction timeouts
# that an installation sets for its role would end a hold early, so they are off on these
# sessions. Set after connecting, one by one: a name this server does not know
# (``idle_session_timeout`` before 14, ``transaction_timeout`` before 17) is skipped, where a
# startup ``options`` naming it would refuse the connection.
_SESSION = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "60000",
    "statement_timeout": "0",
    "idle_session_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "transaction_timeout": "0",
}
# The same from this side, for a server that vanishes while a push waits on it; keepalive
# settings already in the connection string win.
_CLIENT = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
           "keepalives_count": 3, "tcp_user_timeout": 60000}  # fmt: skip
_MAX_LOCK_TIMEOUT_MS = 2**31 - 1

Conn = psycopg.Connection[tuple[object, ...]]


class FleetPushGate:
    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout_s: int = 10,
        maintenance_wait_s: float = 600.0,
    ) -> None:
        # Parsed once, not on every push: the keepalives added to what the string says.
        given = conninfo_to_dict(conninfo)
        self._conninfo = make_conninfo(
            conninfo, **{k: v for k, v in _CLIENT.items() if k not in given}
        )
        self._connect_timeout_s = connect_timeout_s
        self._maintenance_wait_s = maintenance_wait_s

    @contextlib.contextmanager
    def pushing(
        self,
        on_wait: Callable[[], None] | None = None,
        *,
        cancel: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[None]:
        """``on_wait`` is called once when the push has to wait (to say so in the log); the
        wait ends with ``Cancelled`` on ``cancel`` and ``TimedOut`` after ``timeout_s``. A
        database that cannot be reached, or a hold lost before the push finished, fails the
        push with that reason (``PushFailed``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise _unreachable(exc) from exc
        with contextlib.closing(conn):  # closed, never committed: the lock goes with it
            try:
                waited = False
                while not _one(conn, "SELECT pg_try_advisory_lock_shared(%s)", LOCK_KEY):
                    if not waited and on_wait is not None:
                        on_wait()
                    waited = True
                    give_up_waiting(cancel, deadline)
                    if cancel is not None:
                        cancel.wait(_POLL_S)
                    else:
                        time.sleep(_POLL_S)
            except psycopg.Error as exc:
                raise _unreachable(exc) from exc
            yield
            if not _still_held(conn, "ShareLock"):
                raise PushFailed(str(GateLost("push")))

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[Callable[[], None]]:
        """Yields a check to call before each step that needs the pushes held back: it
        raises ``GateLost`` when the hold ended. Gives up with ``GateUnavailable`` after
        ``maintenance_wait_s`` of waiting for pushes, or when the database fails."""
        wait_ms = min(max(int(self._maintenance_wait_s * 1000), 1), _MAX_LOCK_TIMEOUT_MS)
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise GateUnavailable(_cause("the database did not answer", exc)) from exc
        with contextlib.closing(conn):  # closed, never committed: the lock goes with it
            try:
                conn.execute(f"SET lock_timeout = {wait_ms}")
                conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
                conn.execute("SET lock_timeout = 0")
            except psycopg.errors.LockNotAvailable:
                raise GateUnavailable(
                    f"pushes held the fleet's push gate for over {wait_ms / 1000:g} s "
                    "(a worker that died mid-push holds it until the database notices, about "
                    "a minute and a half); the registry is collected on the next run"
                ) from None
            except psycopg.Error as exc:
                raise GateUnavailable(_cause("the database failed", exc)) from exc

            def confirm() -> None:
                if not _still_held(conn, "ExclusiveLock"):
                    raise GateLost("garbage collection")

            yield confirm

    def _connect(self) -> Conn:
        """A connection of its own; closing it releases its lock."""
        conn: Conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout_s,
            application_name="shipyard push gate",
        )
        try:
            for name, value in _SESSION.items():
                # A setting this server does not have has nothing to turn off.
                with contextlib.suppress(psycopg.errors.UndefinedObject):
                    conn.execute(f"SET {name} = {value}")
        except BaseException:
            conn.close()
            raise
        return conn


def _one(conn: Conn, sql: str, *args: object) -> bool:
    row = conn.execute(sql, args).fetchone()
    return bool(row and row[0])


def _still_held(conn: Conn, mode: str) -> bool:
    """The session still holds the gate (same key, same mode): not ended by a restart or a
    terminated backend while the work ran."""
    try:
        return _one(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND granted AND mode = %s"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)",
            mode,
            (LOCK_KEY >> 32) & 0xFFFFFFFF,  # a bigint key is two oids, high and low
            LOCK_KEY & 0xFFFFFFFF,
        )
    except psycopg.Error:
        return False


def _cause(what: str, exc: psycopg.Error) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the fleet's push gate could not be taken ({what}): {short_cause(first)}"


def _unreachable(exc: psycopg.Error) -> PushFailed:
    return PushFailed(_cause("the database did not answer", exc))
