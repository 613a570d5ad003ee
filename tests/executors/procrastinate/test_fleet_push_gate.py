"""The fleet's push gate on a real PostgreSQL: pushes from any number of connections hold it
together, the registry's collection waits for them and holds new ones back (saying so), a
collection that asked first goes before later pushes, and a holder that vanishes frees it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from shipyard.executors.procrastinate import jobs, push_gate
from shipyard.executors.procrastinate.push_gate import LOCK_KEY, FleetPushGate
from shipyard.pipeline.errors import Cancelled, PushFailed, TimedOut
from shipyard.pipeline.push_gate import GateLost, GateUnavailable
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


def _gate_backends(conninfo: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'shipyard push gate'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _terminate_gate_sessions(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for pid in _gate_backends(conninfo):
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_gate_sessions_ask_the_server_to_notice_a_dead_peer(conninfo: str) -> None:
    """A worker machine that dies mid-push leaves a half-open connection: the server's own
    keepalives end it (and the hold) in about a minute and a half, not the kernel's two
    hours; an installation's statement or idle timeouts cannot end a hold early. Options
    already in the connection string are kept otherwise."""
    gate = FleetPushGate(conninfo + "?options=-c%20statement_timeout%3D5s%20-c%20work_mem%3D5MB")
    with contextlib.closing(gate._connect()) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval",
                         "tcp_keepalives_count", "statement_timeout", "work_mem")
        }  # fmt: skip
    assert shown == {
        "tcp_keepalives_idle": "30",
        "tcp_keepalives_interval": "10",
        "tcp_keepalives_count": "3",
        "statement_timeout": "0",
        "work_mem": "5MB",
    }


def test_a_waiting_push_stops_on_abort_and_on_timeout(conninfo: str) -> None:
    gate = FleetPushGate(conninfo)
    cancel = threading.Event()
    with gate.maintenance():
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled), gate.pushing(cancel=cancel):
            pytest.fail("pushed during the collection")
        assert time.monotonic() - started < 3
        late = gate.pushing(timeout_s=0.5)
        with pytest.raises(TimedOut, match="garbage collection timed out"), late:
            pytest.fail("pushed during the collection")
    with gate.pushing(timeout_s=5):  # afterwards the gate is open again
        pass


def test_a_collection_gives_up_behind_a_hold_that_does_not_end(conninfo: str) -> None:
    """The collection waits ``maintenance_wait_s``, says why it gave up, and its request
    leaves the queue: pushes go on."""
    holder = FleetPushGate(conninfo)
    with holder.pushing():
        collection = FleetPushGate(conninfo, maintenance_wait_s=1).maintenance()
        with pytest.raises(GateUnavailable, match="for over 1 s"), collection:
            pytest.fail("collected during a push")
        with FleetPushGate(conninfo).pushing(timeout_s=2):
            pass


def test_a_push_whose_hold_ended_under_it_fails(conninfo: str) -> None:
    """The server restarted or ended the session mid-push: a collection may have run
    meanwhile, so the push does not report success."""
    gate = FleetPushGate(conninfo)
    with pytest.raises(PushFailed, match="push gate was lost during the push"), gate.pushing():
        _terminate_gate_sessions(conninfo)
    with gate.pushing():  # a push that kept its hold is fine
        pass


def test_a_collection_whose_hold_ended_stops_deleting(conninfo: str) -> None:
    with FleetPushGate(conninfo).maintenance() as confirm:
        confirm()
        _terminate_gate_sessions(conninfo)
        with pytest.raises(GateLost, match="nothing more is deleted"):
            confirm()


def test_a_setting_the_server_does_not_have_is_skipped(
    conninfo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``idle_session_timeout`` is new in PostgreSQL 14, ``transaction_timeout`` in 17: an
    older server must not refuse the gate."""
    monkeypatch.setitem(push_gate._SESSION, "no_such_setting", "0")
    with FleetPushGate(conninfo).pushing(timeout_s=5):
        pass


def test_a_collection_against_an_unreachable_database_gives_up_with_the_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gate = FleetPushGate(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout_s=2)
    with pytest.raises(GateUnavailable, match="database did not answer"), gate.maintenance():
        pytest.fail("collected without the gate")
