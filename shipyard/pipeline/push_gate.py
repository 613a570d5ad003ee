"""Pushes and registry maintenance exclude each other: any number of builds push (and tag)
at once; garbage collection waits for them to finish and holds new ones back until it is
done, so a build waits instead of failing against a read-only registry."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class Gate(Protocol):
    """What the pipeline and garbage collection need of a gate: this one holds one
    process's pushes; ``executors.procrastinate.push_gate.FleetPushGate`` every worker's."""

    def pushing(
        self, on_wait: Callable[[], None] | None = None
    ) -> AbstractContextManager[None]: ...

    def maintenance(self) -> AbstractContextManager[None]: ...


class PushGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pushing = 0
        self._maintenance = False
        self._waiting_maintenance = 0

    @contextlib.contextmanager
    def pushing(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """``on_wait`` is called once when the push has to wait (to say so in the log)."""
        with self._cond:
            if (self._maintenance or self._waiting_maintenance) and on_wait is not None:
                on_wait()
            # Maintenance that asked first goes first: a steady stream of builds must not
            # starve it.
            self._cond.wait_for(lambda: not self._maintenance and not self._waiting_maintenance)
            self._pushing += 1
        try:
            yield
        finally:
            with self._cond:
                self._pushing -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[None]:
        with self._cond:
            self._waiting_maintenance += 1
            try:
                self._cond.wait_for(lambda: not self._maintenance and self._pushing == 0)
            finally:
                self._waiting_maintenance -= 1
            self._maintenance = True
        try:
            yield
        finally:
            with self._cond:
                self._maintenance = False
                self._cond.notify_all()
