"""The SQLite write gate: one writer at a time in this process, the executor's writes first,
bounded waits (shipyard/store/write_gate.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from shipyard.store.db import make_engine
from shipyard.store.write_gate import WriteGate, WriteGateTimeout


def test_urgent_waiters_go_before_ordinary_ones() -> None:
    gate = WriteGate()
    holder = object()
    assert gate.acquire(holder, urgent=False, timeout_s=1)
    order: list[str] = []

    def wait(name: str, urgent: bool) -> None:
        me = object()
        assert gate.acquire(me, urgent=urgent, timeout_s=10)
        order.append(name)
        gate.release(me)

    ordinary = threading.Thread(target=wait, args=("request", False))
    ordinary.start()
    time.sleep(0.1)  # the request waits first
    urgent = threading.Thread(target=wait, args=("heartbeat", True))
    urgent.start()
    time.sleep(0.1)
    gate.release(holder)
    ordinary.join(5)
    urgent.join(5)
    assert order == ["heartbeat", "request"]


def test_a_wait_is_bounded() -> None:
    gate = WriteGate()
    assert gate.acquire(object(), urgent=False, timeout_s=1)
    began = time.monotonic()
    assert not gate.acquire(object(), urgent=True, timeout_s=0.2)
    assert time.monotonic() - began < 5


def test_engines_on_one_file_share_the_gate_and_release_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    requests, worker = make_engine(url), make_engine(url, worker=True)
    with requests.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    conn_a = requests.connect()
    conn_a.execute(text("INSERT INTO t VALUES (1)"))  # holds the gate until commit
    with pytest.raises(WriteGateTimeout), worker.connect() as conn_b:
        conn_b.execute(text("INSERT INTO t VALUES (2)"))  # waits its 5 s, then gives up
    conn_a.commit()
    with worker.begin() as conn_b:
        conn_b.execute(text("INSERT INTO t VALUES (3)"))
    conn_a.execute(text("INSERT INTO t VALUES (4)"))
    conn_a.close()  # returned mid-transaction: rolled back, the gate given back
    with worker.begin() as conn_b:
        conn_b.execute(text("INSERT INTO t VALUES (5)"))
        rows = conn_b.execute(text("SELECT x FROM t ORDER BY x")).scalars().all()
    assert rows == [1, 3, 5]
    requests.dispose()
    worker.dispose()


def test_urgent_writers_cannot_starve_ordinary_ones() -> None:
    """Two log writers taking turns (always one urgent waiter) still let a request in."""
    gate = WriteGate()
    stop = threading.Event()
    request_in = threading.Event()

    def log_writer() -> None:
        while not stop.is_set():
            me = object()
            if gate.acquire(me, urgent=True, timeout_s=5):
                time.sleep(0.005)
                gate.release(me)

    writers = [threading.Thread(target=log_writer) for _ in range(2)]
    for w in writers:
        w.start()
    try:
        me = object()
        assert gate.acquire(me, urgent=False, timeout_s=10)
        request_in.set()
        gate.release(me)
    finally:
        stop.set()
        for w in writers:
            w.join(5)
    assert request_in.is_set()
