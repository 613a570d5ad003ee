"""The LISTEN side of abort: ``shipyard_abort`` notifications (payload: build id) reach the
worker running the build within milliseconds. Its own autocommit psycopg connection,
reconnected with backoff; while it is down, the heartbeat's abort flag (every
``SHIPYARD_HEARTBEAT_S``) still stops the build, only later."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "shipyard_abort"


class AbortListener:
    def __init__(self, conninfo: str, on_abort: Callable[[str], None]) -> None:
        self._conninfo = conninfo
        self._on_abort = on_abort
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
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    while not self._stop.is_set():
                        # A timeout so stop() is seen; the generator ends after it.
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except Exception:
                log.warning("abort listener lost its connection; reconnecting", exc_info=True)
            self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def _deliver(self, build_id: str) -> None:
        try:
            self._on_abort(build_id)
        except Exception:
            log.exception("abort of %s failed", build_id)
