"""LISTEN/NOTIFY (shipyard/store/listen.py) on the session's scratch PostgreSQL database:
a notification published in a transaction is heard after its commit and never after a
rollback, and the listener comes back (telling its subscribers so) after the server ended
its connection. Order, not time, shows what was not heard: notifications of committed
transactions arrive in commit order, so once a later marker is heard, an earlier one that
was not is never coming."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from shipyard.store import listen
from shipyard.store.db import make_engine, make_sessionmaker

CHANNEL = "shipyard_test_listen"
WAIT_S = 10.0  # a bound on a hang, not a timing assertion


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(postgres_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def heard(postgres_url: str) -> Iterator[queue.Queue[str | None]]:
    """What a listener on CHANNEL hears, in order (``None``: it (re)connected)."""
    got: queue.Queue[str | None] = queue.Queue()
    listener = listen.Listener(postgres_url, [CHANNEL], name="test-listener")
    listener.subscribe(CHANNEL, got.put)
    listener.start()
    assert listener.wait_ready(WAIT_S)
    assert got.get(timeout=WAIT_S) is None  # the first connect
    yield got
    listener.stop()


def publish_committed(sessions: sessionmaker[Session], payload: str) -> None:
    with sessions() as session:
        listen.publish(session, CHANNEL, payload)
        session.commit()


def test_heard_after_commit_never_after_rollback(
    sessions: sessionmaker[Session], heard: queue.Queue[str | None]
) -> None:
    with sessions() as open_txn:
        listen.publish(open_txn, CHANNEL, "pending")
        publish_committed(sessions, "marker-1")  # commits while "pending" is uncommitted
        assert heard.get(timeout=WAIT_S) == "marker-1"
        open_txn.commit()
    assert heard.get(timeout=WAIT_S) == "pending"

    with sessions() as session:
        listen.publish(session, CHANNEL, "rolled back")
        session.rollback()
    publish_committed(sessions, "marker-2")
    assert heard.get(timeout=WAIT_S) == "marker-2"  # not "rolled back"


def test_reconnects_after_the_server_ends_its_connection(
    postgres_url: str, sessions: sessionmaker[Session], heard: queue.Queue[str | None]
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'test-listener' AND datname = current_database()"
        ).fetchone()
    assert ended == (1,)
    # Reconnected: subscribers are told to re-read (anything sent meanwhile was lost).
    assert heard.get(timeout=WAIT_S) is None
    publish_committed(sessions, "after")
    assert heard.get(timeout=WAIT_S) == "after"


def test_publish_is_a_no_op_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with make_sessionmaker(engine)() as session:
        listen.publish(session, CHANNEL, "x")  # no pg_notify on SQLite: it must not fail
        session.commit()
    engine.dispose()


def test_unknown_channels_are_refused() -> None:
    listener = listen.Listener("postgresql://unused/x", [CHANNEL])
    with pytest.raises(ValueError):
        listener.subscribe("elsewhere", lambda _: None)
    listener.stop()  # never started: closes its pipe only


def test_libpq_url_drops_the_driver() -> None:
    assert listen.libpq_url("postgresql+psycopg://u@h:5/db") == "postgresql://u@h:5/db"
    assert listen.libpq_url("postgresql://h/db") == "postgresql://h/db"
