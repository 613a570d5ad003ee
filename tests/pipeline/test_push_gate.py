"""Pushes run side by side; maintenance waits for them and holds new ones back; a waiting
push gives up on abort or timeout."""

from __future__ import annotations

import threading
import time

import pytest

from shipyard.pipeline.errors import Cancelled, TimedOut
from shipyard.pipeline.push_gate import PushGate


def test_maintenance_waits_for_pushes_and_holds_new_ones() -> None:
    gate = PushGate()
    events: list[str] = []
    first_in = threading.Event()
    release_first = threading.Event()

    def push(name: str, hold: threading.Event | None = None) -> None:
        with gate.pushing(on_wait=lambda: events.append(f"{name} waits")):
            events.append(f"{name} pushes")
            if hold is not None:
                first_in.set()
                hold.wait(5)

    def maintain() -> None:
        with gate.maintenance():
            events.append("gc")
            time.sleep(0.2)
            events.append("gc done")

    pusher = threading.Thread(target=push, args=("a", release_first))
    pusher.start()
    assert first_in.wait(5)
    gc = threading.Thread(target=maintain)
    gc.start()
    time.sleep(0.1)
    late = threading.Thread(target=push, args=("b",))
    late.start()
    time.sleep(0.1)
    assert "gc" not in events  # a push is in flight
    release_first.set()
    for t in (pusher, gc, late):
        t.join(5)
    assert events == ["a pushes", "b waits", "gc", "gc done", "b pushes"]


def test_pushes_do_not_exclude_each_other() -> None:
    gate = PushGate()
    with gate.pushing(), gate.pushing():
        pass


def test_a_push_waiting_for_maintenance_stops_on_abort_and_on_timeout() -> None:
    gate = PushGate()
    cancel = threading.Event()
    with gate.maintenance() as confirm:
        confirm()  # one process: the hold cannot end under its holder
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(Cancelled), gate.pushing(cancel=cancel):
            pytest.fail("pushed during maintenance")
        late = gate.pushing(timeout_s=0.3)
        with pytest.raises(TimedOut, match="garbage collection timed out"), late:
            pytest.fail("pushed during maintenance")
    with gate.pushing(timeout_s=1):
        pass
