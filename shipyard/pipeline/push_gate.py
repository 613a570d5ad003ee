"""Pushes and registry maintenance exclude each other: any number of builds push (and tag)
at once; garbage collection waits for them to finish and holds new ones back until it is
done, so a build waits instead of failing against a read-only registry."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from shipyard.pipeline.errors import Cancelled, TimedOut

# How often a waiting push looks at its abort flag.
_POLL_S = 0.5


class GateUnavailable(Exception):
    """Maintenance could not take the gate in time; the registry is left as it is."""


class GateLost(Exception):
    """The gate ended under its holder (a fleet gate's database session ended): the work
    it guarded may have overlapped the other side."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"the fleet's push gate was lost during the {what} (its database session ended), "
            "so a registry collection may have run meanwhile; "
            + ("build again" if what == "push" else "nothing more is deleted until the next run")
        )


class Gate(Protocol):
    """What the pipeline and garbage collection need of a gate: this one holds one
    process's pushes; ``executors.procrastinate.push_gate.FleetPushGate`` every worker's.

    ``pushing`` waits (saying so through ``on_wait``) until no maintenance runs or waits;
    the wait ends with ``Cancelled`` or ``TimedOut``. ``maintenance`` yields a check to call
    before each step: it raises ``GateLost`` if the hold has ended."""

    def pushing(
        self,
        on_wait: Callable[[], None] | None = None,
        *,
        cancel: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> AbstractContextManager[None]: ...

    def maintenance(self) -> AbstractContextManager[Callable[[], None]]: ...


class PushGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pushing = 0
        self._maintenance = False
        self._waiting_maintenance = 0

    @contextlib.contextmanager
    def pushing(
        self,
        on_wait: Callable[[], None] | None = None,
        *,
        cancel: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[None]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            if (self._maintenance or self._waiting_maintenance) and on_wait is not None:
                on_wait()
            # Maintenance that asked first goes first: a steady stream of builds must not
            # starve it.
            while not self._cond.wait_for(self._open, timeout=_POLL_S):
                give_up_waiting(cancel, deadline)
            self._pushing += 1
        try:
            yield
        finally:
            with self._cond:
                self._pushing -= 1
                self._cond.notify_all()

    def _open(self) -> bool:
        return not self._maintenance and not self._waiting_maintenance

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[Callable[[], None]]:
        with self._cond:
            self._waiting_maintenance += 1
            try:
                self._cond.wait_for(lambda: not self._maintenance and self._pushing == 0)
            finally:
                self._waiting_maintenance -= 1
            self._maintenance = True
        try:
            yield _held  # in one process, a hold cannot end under its holder
        finally:
            with self._cond:
                self._maintenance = False
                self._cond.notify_all()


def _held() -> None:
    return None


def give_up_waiting(cancel: threading.Event | None, deadline: float | None) -> None:
    """A push waiting at a gate stops on abort (``Cancelled``) and on its deadline."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    if deadline is not None and time.monotonic() > deadline:
        raise TimedOut("waiting for the registry's garbage collection timed out")
