"""The fleet's push gate on a real PostgreSQL: pushes from any number of connections hold it
together, the registry's collection waits for them and holds new ones back (saying so), a
collection that asked first goes before later pushes, and a holder that vanishes frees it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.push_gate import LOCK_KEY, FleetPushGate
from shipyard.pipeline.errors import PushFailed
from tests.helpers.pg import scratch_database


@pytest.fixture
def conninfo() -> Iterator[str]:
    with scratch_database("shipyard_push_gate") as url:
        yield jobs.conninfo(url)


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_pushes_share_and_collection_waits_for_them(conninfo: str) -> None:
    a, b = FleetPushGate(conninfo), FleetPushGate(conninfo)  # two workers
    events: list[str] = []
    collected = threading.Event()

    def collect() -> None:
        with FleetPushGate(conninfo).maintenance():
            events.append("collect")
            collected.set()

    with a.pushing(), b.pushing():  # both at once: nobody waits
        collector = _in_thread(collect)
        assert not collected.wait(1.0)
        events.append("pushed")
    assert collected.wait(10)
    collector.join(10)
    assert events == ["pushed", "collect"]


def test_a_push_during_collection_waits_and_says_so(conninfo: str) -> None:
    gate = FleetPushGate(conninfo)
    said: list[str] = []
    pushed = threading.Event()

    def push() -> None:
        with gate.pushing(lambda: said.append("waiting")):
            pushed.set()

    with FleetPushGate(conninfo).maintenance():
        pusher = _in_thread(push)
        assert not pushed.wait(1.0)
        assert said == ["waiting"]
    assert pushed.wait(10)
    pusher.join(10)


def test_a_waiting_collection_goes_before_later_pushes(conninfo: str) -> None:
    """A steady stream of pushes cannot starve the collection."""
    gate = FleetPushGate(conninfo)
    order: list[str] = []
    waiting: list[str] = []

    def collect() -> None:
        with gate.maintenance():
            order.append("collect")
            time.sleep(0.3)

    def late_push() -> None:
        with gate.pushing(lambda: waiting.append("late")):
            order.append("late push")

    with gate.pushing():
        collector = _in_thread(collect)
        time.sleep(0.5)  # the collection is queued behind this push
        late = _in_thread(late_push)
        time.sleep(0.5)
        assert waiting == ["late"] and order == []
    collector.join(10)
    late.join(10)
    assert order == ["collect", "late push"]


def test_a_vanished_holder_frees_the_gate(conninfo: str) -> None:
    """A worker killed mid-push: its connection ends, and its hold with it."""
    holder = psycopg.connect(conninfo, autocommit=True)
    holder.execute("SELECT pg_advisory_lock_shared(%s)", (LOCK_KEY,))
    done = threading.Event()

    def collect() -> None:
        with FleetPushGate(conninfo).maintenance():
            done.set()

    collector = _in_thread(collect)
    assert not done.wait(1.0)
    holder.close()
    assert done.wait(10)
    collector.join(10)


def test_an_unreachable_database_fails_the_push_with_the_reason() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gate = FleetPushGate(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout_s=2)
    with pytest.raises(PushFailed, match="push gate could not be taken"), gate.pushing():
        pytest.fail("pushed without the gate")
