"""The LISTEN side of what the API tells workers over PostgreSQL NOTIFY: ``shipyard_abort``
(payload: build id) reaches the worker running the build within milliseconds;
``shipyard_reset_cache`` and ``shipyard_release`` (payload: project id) reach every worker
that holds a store of the project. One autocommit psycopg connection of its own, reconnected
with backoff. While it is down, the heartbeat's abort flag (every ``SHIPYARD_HEARTBEAT_S``)
still stops a build, only later; a reset or release sent meanwhile is missed by this worker
(its store stays: a cache, never the truth)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import psycopg

from shipyard.store import listen

log = logging.getLogger(__name__)

CHANNEL = listen.ABORT  # sent by store.builds.request_abort with the flag's commit
RESET_CACHE = "shipyard_reset_cache"
RELEASE = "shipyard_release"

Handler = Callable[[str], None]


class AbortListener:
    def __init__(
        self, conninfo: str, on_abort: Handler, others: Mapping[str, Handler] | None = None
    ) -> None:
        self._conninfo = conninfo
        self._handlers: dict[str, Handler] = {CHANNEL: on_abort, **(others or {})}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait on it)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipyard-abort", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    for channel in self._handlers:
                        # Channel names are our constants, never input.
                        conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    delay = 0.5
                    while not self._stop.is_set():
                        # A timeout so stop() is seen; the generator ends after it.
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.channel, note.payload)
            except Exception:
                log.warning("abort listener lost its connection; reconnecting", exc_info=True)
            self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def _deliver(self, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            log.exception("%s %s failed", channel, payload)


def publish(conninfo: str, channel: str, payload: str) -> None:
    """``pg_notify`` on a short connection of its own (after the caller's commit)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
