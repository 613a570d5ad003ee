"""Waking live tails (shipyard/api/tail_wakeups.py), without a database: a notification
wakes the tails of its build only, a reconnect (``None``) and a shutdown wake every tail,
and a tail that left is no longer woken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shipyard.api.tail_wakeups import TailWakeups
from shipyard.store import listen


class FakeListener:
    def __init__(self) -> None:
        self.callbacks: dict[str, listen.Callback] = {}

    def subscribe(self, channel: str, callback: listen.Callback) -> Callable[[], None]:
        self.callbacks[channel] = callback
        return lambda: None

    def start(self) -> None:
        pass

    def stop(self, timeout_s: float = 5.0) -> None:
        pass

    def wait_ready(self, timeout_s: float) -> bool:
        return True

    def notify(self, payload: str | None) -> None:
        """As the listener's thread would, from outside the event loop."""
        self.callbacks[listen.LOGS](payload)


async def _settle() -> None:
    # call_soon_threadsafe runs the set() on the loop's next turn.
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_notification_wakes_the_tails_of_its_build_only() -> None:
    source = FakeListener()
    wakeups = TailWakeups(source)

    async def run() -> None:
        with wakeups.watch("a") as a, wakeups.watch("b") as b:
            source.notify("a")
            await _settle()
            assert a.is_set() and not b.is_set()
            a.clear()
            source.notify(None)  # reconnected: anything may have changed
            await _settle()
            assert a.is_set() and b.is_set()
            a.clear()
            b.clear()
            wakeups.wake_all()  # shutdown
            await _settle()
            assert a.is_set() and b.is_set()
        with wakeups.watch("a") as again:
            source.notify("b")
            await _settle()
            assert not again.is_set()
        assert not wakeups._waiting  # every tail that left was forgotten

    asyncio.run(run())


def test_a_notification_for_a_tail_whose_loop_closed_is_dropped() -> None:
    source = FakeListener()
    wakeups = TailWakeups(source)
    held: list[object] = []

    async def leave_a_watch_open() -> None:
        watch = wakeups.watch("a")
        held.append(watch)
        watch.__enter__()

    asyncio.run(leave_a_watch_open())  # its loop is closed now
    source.notify("a")  # must not raise on the listener's thread
