"""One writer at a time on a SQLite file, queued in this process instead of in SQLite's busy
handler (issue 11, "SQLite holds load").

SQLite lets one connection write at a time. A connection that finds the file locked sleeps in
its busy handler (1, 2, 5 … up to 100 ms a try) and is not woken when the lock is free, so
under load a write waits tens of milliseconds for nothing and nobody decides who goes next.
Shipyard's own connections instead take this gate before their first write of a transaction
(pysqlite begins the transaction right there) and give it back on commit or rollback: waiters
are woken at once, and *urgent* waiters — the executor's heartbeats, claims, outcomes and the
build log writers — go before every API request that waits. Readers never take it (WAL: they
do not block the writer, nor it them). Other processes (the CLI, a backup) still meet
SQLite's own lock and wait in its busy handler.

Waits are bounded: a connection that cannot get the gate within its timeout fails its
statement with :class:`WriteGateTimeout` (a request answers 503 with ``Retry-After``, the
executor retries on its next tick).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, event

_HELD = "shipyard_write_gate_held"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteGateTimeout(Exception):
    """The database stayed busy with other writes for longer than this caller may wait."""


class WriteGate:
    """Urgent waiters go first, but never more than ``URGENT_STREAK`` times in a row while an
    ordinary one waits: a build flooding its log cannot starve the API's writes either."""

    URGENT_STREAK = 4

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: object | None = None
        self._urgent_waiting = 0
        self._ordinary_waiting = 0
        self._streak = 0  # urgent acquisitions since an ordinary one

    def _may_go(self, urgent: bool) -> bool:
        if self._owner is not None:
            return False
        ordinary_turn = self._ordinary_waiting > 0 and self._streak >= self.URGENT_STREAK
        if urgent:
            return not ordinary_turn
        return self._urgent_waiting == 0 or ordinary_turn

    def acquire(self, owner: object, *, urgent: bool, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            else:
                self._ordinary_waiting += 1
            try:
                while not self._may_go(urgent):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                self._owner = owner
                self._streak = self._streak + 1 if urgent else 0
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                else:
                    self._ordinary_waiting -= 1
                self._cond.notify_all()  # who may go depends on who waits

    def release(self, owner: object) -> None:
        with self._cond:
            if self._owner is owner:
                self._owner = None
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        return self._owner is not None


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def gate_for(path: str) -> WriteGate:
    """The one gate of a database file in this process (every engine on it shares it: the
    lock it stands for is the file's)."""
    with _gates_lock:
        return _gates.setdefault(path, WriteGate())


def install(engine: Engine, gate: WriteGate, *, urgent: bool, timeout_s: float) -> None:
    """Make every connection of ``engine`` take ``gate`` before it writes."""

    def _is_write(statement: str) -> bool:
        return statement.lstrip()[:7].upper().startswith(_WRITES)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        info = conn.connection.info
        if _HELD in info or not _is_write(statement):
            return
        owner = object()
        if not gate.acquire(owner, urgent=urgent, timeout_s=timeout_s):
            raise WriteGateTimeout(f"the database was busy with other writes for {timeout_s:g} s")
        info[_HELD] = owner

    def _release_conn(conn: Any) -> None:
        owner = conn.connection.info.pop(_HELD, None)
        if owner is not None:
            gate.release(owner)

    event.listen(engine, "commit", _release_conn)
    event.listen(engine, "rollback", _release_conn)

    def _release_record(_dbapi_conn: Any, record: Any, *_rest: Any) -> None:
        # The pool rolls back a connection returned mid-transaction without going through
        # the Connection: give the gate back there too.
        owner = record.info.pop(_HELD, None) if record is not None else None
        if owner is not None:
            gate.release(owner)

    def _on_reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        _release_record(dbapi_connection, connection_record)

    event.listen(engine.pool, "reset", _on_reset)
    event.listen(engine.pool, "checkin", _release_record)
    event.listen(engine.pool, "invalidate", _release_record)
