"""Wake live log tails when their build's log grows or the build concludes, from
``NOTIFY shipyard_logs`` (PostgreSQL: the writer may be a worker on another machine).

One listener connection per API process, whatever the number of tails. A wake-up only says
"re-read": the tail reads the rows itself, so a missed or duplicate notification costs at
most one slow re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from shipyard.store import listen


class Source(Protocol):
    """What wakes tails: ``listen.Listener`` (or a stand-in in tests)."""

    def subscribe(self, channel: str, callback: listen.Callback) -> Callable[[], None]: ...
    def start(self) -> None: ...
    def stop(self, timeout_s: float = ...) -> None: ...
    def wait_ready(self, timeout_s: float) -> bool: ...


class TailWakeups:
    def __init__(self, listener: Source) -> None:
        self._listener = listener
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        listener.subscribe(listen.LOGS, self._notified)

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once notifications are heard (start-up and tests)."""
        return self._listener.wait_ready(timeout_s)

    def wake_all(self) -> None:
        """Wake every tail (shutdown: they see ``closing`` now, not after a re-read delay)."""
        self._notified(None)

    @contextmanager
    def watch(self, build_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``build_id``'s log may have changed. Call on the event loop;
        clear the event *before* each read, so a change during the read is not lost."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(build_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiting = self._waiting.get(build_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiting[build_id]

    def _notified(self, build_id: str | None) -> None:
        """On the listener's thread. ``None``: anything may have changed (a reconnect)."""
        with self._lock:
            if build_id is None:
                entries = [e for waiting in self._waiting.values() for e in waiting]
            else:
                entries = list(self._waiting.get(build_id, ()))
        for loop, event in entries:
            # RuntimeError: that loop has closed, its tail is gone.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
