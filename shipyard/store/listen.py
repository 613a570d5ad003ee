"""PostgreSQL LISTEN/NOTIFY: wake-ups between processes and machines.

``publish`` queues a notification in the caller's transaction, so listeners hear of a change
only once it is committed and visible (and never of one rolled back). A ``Listener`` holds
its own connection in a thread and calls back on every notification. A notification is a
wake-up, never the data: a listener re-reads the rows, and after a reconnect (when some may
have been missed) every callback is called with ``None`` so it re-reads anyway.

On SQLite (one machine, no NOTIFY) ``publish`` does nothing; readers poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from collections.abc import Callable, Iterable
from typing import Final

import psycopg
from psycopg import sql
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Payload: a build id. A build's log grew, or it concluded (live tails re-read it).
LOGS: Final = "shipyard_logs"
# Payload: a build id. Someone asked to abort a running build (workers stop it at once
# instead of on their next heartbeat).
ABORT: Final = "shipyard_abort"

# Without traffic the connection is checked this often: a half-open TCP connection (a
# machine or a NAT gone) shows up in no other way.
IDLE_CHECK_S = 10.0
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5

# ``None``: the listener (re)connected and notifications may have been missed.
Callback = Callable[[str | None], None]


def publish(target: Session | Connection, channel: str, payload: str) -> None:
    """NOTIFY ``channel`` with ``payload`` when the caller's transaction commits."""
    dialect = target.get_bind().dialect if isinstance(target, Session) else target.dialect
    if dialect.name != "postgresql":
        return
    target.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


def libpq_url(sqlalchemy_url: str) -> str:
    """A URL psycopg connects to, from an SQLAlchemy one (``postgresql+psycopg://`` …)."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class Listener:
    """LISTEN on fixed ``channels`` over one connection, in a daemon thread; reconnects with
    backoff. Callbacks run on that thread: keep them short and non-blocking."""

    def __init__(self, url: str, channels: Iterable[str], *, name: str = "listener") -> None:
        self._url = url
        self._channels = tuple(dict.fromkeys(channels))
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[str, list[Callback]] = {channel: [] for channel in self._channels}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.connects = 0  # successful connections so far (tests, metrics)

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(payload)`` for each notification on ``channel``; returns the
        function that unsubscribes it."""
        if channel not in self._callbacks:
            raise ValueError(f"not listening on {channel!r}")
        with self._lock:
            self._callbacks[channel].append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks[channel].remove(callback)

        return unsubscribe

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once LISTEN is in place (notifications committed from now on are heard)."""
        return self._ready.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._wake_r >= 0 and (self._thread is None or not self._thread.is_alive()):
            # Once only: a second close could hit a number the process has reused.
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=self._name,  # pg_stat_activity says who listens
                    # The idle check's SELECT 1 would wait on a dead peer for the kernel's
                    # retransmission timeout (minutes); keep-alives end it within ~1 min.
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                ) as conn:
                    for channel in self._channels:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.connects += 1
                    self._ready.set()
                    delay = BACKOFF_FIRST_S
                    # Whatever was sent while we were away is lost: every subscriber re-reads.
                    self._dispatch(None, None)
                    self._serve(conn)
            except Exception as exc:  # psycopg.Error mostly; nothing may end the thread
                self._ready.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "%s: connection lost or refused (%s); retrying in %.1f s",
                    self._name,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    def _serve(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Deliver notifications until stopped; raises ``psycopg.Error`` when the connection
        fails."""
        # selectors, not select.select: an API process may hold more than 1024 descriptors.
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop.is_set():
                ready = selector.select(IDLE_CHECK_S)
                if any(key.fd == self._wake_r for key, _ in ready):
                    continue  # only stop() writes to the pipe
                if not ready:
                    conn.execute("SELECT 1")  # notifications read meanwhile wait in a backlog
                for note in conn.notifies(timeout=0):
                    self._dispatch(note.channel, note.payload)

    def _dispatch(self, channel: str | None, payload: str | None) -> None:
        """Call the callbacks of ``channel`` (``None``: of every channel)."""
        with self._lock:
            pairs = [
                (name, callback)
                for name, callbacks in self._callbacks.items()
                if channel is None or name == channel
                for callback in callbacks
            ]
        for name, callback in pairs:
            try:
                callback(payload)
            except Exception:
                log.exception("%s: a callback for %s failed", self._name, name)
