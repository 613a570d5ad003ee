"""Scale-out on a scratch PostgreSQL: the doorbell is committed with the build row (and
rolled back with it), one per build, writes of a handed-back run are fenced, the lease sweep
re-queues then gives up, the reconciler re-rings, and aborts arrive over NOTIFY."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from fastapi.testclient import TestClient
from procrastinate import App
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.app import create_app
from shipyard.builds.status import BuildStatus
from shipyard.executors.base import ResourceHooks
from shipyard.executors.local import _Running
from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.abort_listener import RELEASE, RESET_CACHE, AbortListener
from shipyard.executors.procrastinate.api import ProcrastinateApi
from shipyard.executors.procrastinate.sweep import SWEEP_LOCK, sweep_once
from shipyard.executors.procrastinate.worker import HANDBACK, WorkerExecutor
from shipyard.executors.runtime import executor_for
from shipyard.settings import Settings, prepare
from shipyard.store import builds as build_store
from shipyard.store import listen
from shipyard.store import logs as log_store
from shipyard.store.builds import now
from shipyard.store.db import make_engine, make_sessionmaker
from shipyard.store.models import Build
from tests.helpers.pg import scratch_database


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with scratch_database("shipyard_scale") as url:
        settings = prepare(
            Settings(
                data_dir=tmp_path / "data",
                database_url=url,
                executor="procrastinate",
                # External (never reached here): the API then starts no embedded registry.
                registry="127.0.0.1:9",
            )
        )
        with TestClient(create_app(settings, executor_for)) as client:
            assert settings.admin_token is not None
            client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
            yield client


def sessions_of(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.shipyard.sessions  # type: ignore[attr-defined, no-any-return]


def executor_of(client: TestClient) -> ProcrastinateApi:
    executor = client.app.state.shipyard.executor  # type: ignore[attr-defined]
    assert isinstance(executor, ProcrastinateApi)
    return executor


def start(client: TestClient, service: str = "web") -> str:
    if client.get("/v1/projects/p").status_code != 200:
        assert client.post("/v1/projects", json={"name": "p"}).status_code == 200
    if client.get(f"/v1/projects/p/services/{service}").status_code != 200:
        body = {"name": service, "vcsData": {"projectUrl": "file:///nowhere"}}
        assert client.post("/v1/projects/p/services/build", json=body).status_code == 200
    r = client.post(f"/v1/projects/p/services/{service}/build", json={"branch": "main"})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


def doorbells(session: Session, build_id: str) -> list[str]:
    conn = jobs.driver_connection(session)
    rows = conn.execute(
        "SELECT status FROM procrastinate_jobs WHERE queueing_lock = %s", (build_id,)
    ).fetchall()
    session.rollback()
    return [str(row[0]) for row in rows]


def claim(sessions: sessionmaker[Session], build_id: str) -> int:
    with sessions() as session:
        attempt = build_store.claim(session, build_id, "worker:test:1:x")
        session.commit()
    assert attempt is not None
    return attempt


def expire(sessions: sessionmaker[Session], build_id: str) -> None:
    with sessions() as session:
        session.execute(
            update(Build)
            .where(Build.id == build_id)
            .values(heartbeat_at=now() - timedelta(minutes=5))
        )
        session.commit()


def test_the_doorbell_is_committed_with_the_build_row(api: TestClient) -> None:
    build_id = start(api)
    with sessions_of(api)() as session:
        assert doorbells(session, build_id) == ["todo"]
        job = (
            jobs.driver_connection(session)
            .execute(
                "SELECT task_name, queue_name, args FROM procrastinate_jobs WHERE queueing_lock = %s",
                (build_id,),
            )
            .fetchone()
        )
        assert job == (jobs.TASK, jobs.QUEUE, {"build_id": build_id})


def test_a_rolled_back_insert_leaves_no_doorbell(api: TestClient) -> None:
    sessions = sessions_of(api)
    build_id = start(api)
    with sessions() as session:
        first = session.get(Build, build_id)
        assert first is not None
        copy = Build(
            **{
                c.key: getattr(first, c.key)
                for c in Build.__table__.columns
                if c.key not in ("id", "idempotency_key")
            }
        )
        copy.id = "rolled-back-0001"
        session.add(copy)
        session.flush()
        assert doorbells_in(session, "rolled-back-0001") == ["todo"]  # same transaction
        session.rollback()
    with sessions() as session:
        assert doorbells(session, "rolled-back-0001") == []


def doorbells_in(session: Session, build_id: str) -> list[str]:
    rows = jobs.driver_connection(session).execute(
        "SELECT status FROM procrastinate_jobs WHERE queueing_lock = %s", (build_id,)
    )
    return [str(row[0]) for row in rows.fetchall()]


def test_one_waiting_doorbell_per_build(api: TestClient) -> None:
    build_id = start(api)
    app = executor_of(api).app
    with sessions_of(api)() as session:
        assert jobs.defer(app, session, build_id) is False  # the clash does not end the txn
        session.execute(update(Build).where(Build.id == build_id).values(message="still ok"))
        session.commit()
    with sessions_of(api)() as session:
        assert doorbells(session, build_id) == ["todo"]
        build = session.get(Build, build_id)
        assert build is not None and build.message == "still ok"


def test_writes_of_a_handed_back_run_change_nothing(api: TestClient) -> None:
    sessions = sessions_of(api)
    build_id = start(api)
    attempt = claim(sessions, build_id)
    with sessions() as session:
        assert build_store.hand_back(session, build_id, attempt)
        session.commit()
    with sessions() as session:
        # The old run, still going somewhere, tries to write: nothing lands.
        assert not build_store.fenced_update(session, build_id, attempt, status="BUILDING")
        assert build_store.heartbeat(session, build_id, attempt) is None
        assert not build_store.conclude(session, build_id, attempt, BuildStatus.SUCCESS, "x")
        assert not build_store.hand_back(session, build_id, attempt)
        session.commit()
    second = claim(sessions, build_id)
    assert second == attempt + 1
    with sessions() as session:
        assert not build_store.fenced_update(session, build_id, attempt, status="BUILDING")
        assert build_store.fenced_update(session, build_id, second, status="BUILDING")
        session.commit()


def test_a_handed_back_build_can_still_be_aborted(api: TestClient) -> None:
    sessions = sessions_of(api)
    build_id = start(api)
    attempt = claim(sessions, build_id)
    with sessions() as session:
        build_store.hand_back(session, build_id, attempt)
        session.commit()
    r = api.delete(f"/v1/projects/p/services/web/build/{build_id}")
    assert r.status_code in (200, 204), r.text
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None and build.concluded and build.status == "ABORTED"


def test_the_sweep_requeues_an_expired_lease_then_gives_up(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    build_id = start(api)
    with sessions() as session:  # the API's doorbell was taken (a worker rang, then died)
        jobs.driver_connection(session).execute("DELETE FROM procrastinate_jobs")
        session.commit()
    attempt = claim(sessions, build_id)
    expire(sessions, build_id)
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None and report.requeued == [build_id]
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        assert (build.status, build.concluded, build.worker_id) == ("QUEUED", False, None)
        assert doorbells(session, build_id) == ["todo"]
    assert claim(sessions, build_id) == attempt + 1
    expire(sessions, build_id)
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None and report.crashed == [build_id]
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None and build.status == "CRASHED" and build.concluded
        assert "gave up after 2 attempts" in (build.message or "")


def test_a_live_lease_is_left_alone_and_one_sweeper_at_a_time(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    build_id = start(api)
    claim(sessions, build_id)
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None and not report.requeued and not report.crashed
    with sessions() as holder:  # another worker is sweeping
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK})
        assert sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2) is None
        holder.rollback()


def test_the_reconciler_rings_for_queued_builds_without_a_doorbell(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    build_id = start(api)
    with sessions() as session:
        jobs.driver_connection(session).execute("DELETE FROM procrastinate_jobs")
        session.commit()
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None and report.rung == [build_id]
    with sessions() as session:
        assert doorbells(session, build_id) == ["todo"]
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None and report.rung == []  # still waiting: not rung twice


def test_schema_apply_is_idempotent(api: TestClient) -> None:
    url = api.app.state.shipyard.settings.resolved_database_url  # type: ignore[attr-defined]
    assert jobs.apply_schema(url) is False


def test_abort_reaches_the_listener_over_notify(api: TestClient) -> None:
    url = api.app.state.shipyard.settings.resolved_database_url  # type: ignore[attr-defined]
    heard: list[str] = []
    got = threading.Event()

    def on_abort(build_id: str) -> None:
        heard.append(build_id)
        got.set()

    listener = AbortListener(jobs.conninfo(url), on_abort)
    listener.start()
    try:
        assert listener.listening.wait(5)
        began = time.monotonic()
        # What store.builds.request_abort sends with the flag's commit.
        with sessions_of(api)() as session, session.begin():
            listen.publish(session, listen.ABORT, "some-build-0001")
        assert got.wait(5)
        assert heard == ["some-build-0001"]
        assert time.monotonic() - began < 1.0
    finally:
        listener.stop()


def test_the_listener_reconnects(api: TestClient) -> None:
    url = api.app.state.shipyard.settings.resolved_database_url  # type: ignore[attr-defined]
    got = threading.Event()
    listener = AbortListener(jobs.conninfo(url), lambda _id: got.set())
    listener.start()
    try:
        assert listener.listening.wait(5)
        with psycopg.connect(jobs.conninfo(url), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sessions_of(api)() as session, session.begin():
                listen.publish(session, listen.ABORT, "again-0001")
            if got.wait(0.5):
                break
        assert got.is_set()
    finally:
        listener.stop()


def test_procrastinate_refuses_sqlite() -> None:
    with pytest.raises(jobs.NotPostgres, match="needs PostgreSQL"):
        jobs.conninfo("sqlite:///x.db")
    assert jobs.conninfo("postgresql+psycopg://h/db") == "postgresql://h/db"


def worker_executor(sessions: sessionmaker[Session], app: App, **kw: Any) -> WorkerExecutor:
    # No pipeline or secret box: these tests never run a build, only the run's bookkeeping.
    return WorkerExecutor(
        sessions, cast(Any, None), cast(Any, None), concurrency=1, heartbeat_s=0.05,
        lease_s=5, app=app, instance_id="testinst", max_attempts=2,
        watchdog_s=kw.get("watchdog_s", 15.0),
    )  # fmt: skip


def test_a_stopped_run_is_handed_back_with_a_new_doorbell(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    executor = worker_executor(sessions, app)
    build_id = start(api)
    with sessions() as session:
        jobs.driver_connection(session).execute("DELETE FROM procrastinate_jobs")
        attempt = build_store.claim(session, build_id, executor.worker_id)
        session.commit()
    assert attempt == 1
    run = _Running(build_id, attempt)
    run.reason = HANDBACK
    status, message = executor._stopped(run)
    assert status is BuildStatus.QUEUED
    executor._conclude(run, status, message)
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        assert (build.status, build.concluded, build.worker_id) == ("QUEUED", False, None)
        assert doorbells(session, build_id) == ["todo"]
        lines = [line.line for line in log_store.after_seq(session, build_id, -1, 100)]
    assert any("handed back by" in line for line in lines), lines


def test_the_watchdog_stops_a_build_it_cannot_heartbeat(api: TestClient) -> None:
    app = executor_of(api).app
    unreachable = make_sessionmaker(make_engine("postgresql://127.0.0.1:9/nowhere", worker=True))
    executor = worker_executor(unreachable, app, watchdog_s=0.3)
    run = _Running("lost-build-0001", 1)
    executor._running[run.build_id] = run
    thread = threading.Thread(target=executor._heartbeat, daemon=True)
    thread.start()
    try:
        assert run.cancel.wait(10)
        assert run.reason == HANDBACK
        assert executor._stopped(run)[0] is BuildStatus.QUEUED
    finally:
        executor._stopping.set()
        thread.join(timeout=10)


def test_a_restarted_worker_requeues_what_its_dead_process_held(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    executor = worker_executor(sessions, app)
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine, other = start(api, "a"), start(api, "b")
    with sessions() as session:
        jobs.driver_connection(session).execute("DELETE FROM procrastinate_jobs")
        build_store.claim(session, mine, f"{executor.worker_prefix}{dead.pid}:testinst")
        # Another worker's (another data dir) on this host: its own lease decides.
        build_store.claim(session, other, f"{executor.worker_prefix}{dead.pid}:otherinst")
        session.commit()
    executor._recover()
    with sessions() as session:
        assert session.get(Build, mine).status == "QUEUED"  # type: ignore[union-attr]
        assert doorbells(session, mine) == ["todo"]
        assert session.get(Build, other).status == "STARTING"  # type: ignore[union-attr]


def test_the_sweep_prunes_stale_doorbells_and_rerings(api: TestClient) -> None:
    sessions = sessions_of(api)
    app = executor_of(api).app
    build_id = start(api)
    with sessions() as session:  # its doorbell was taken by a worker that died (then pruned)
        jobs.driver_connection(session).execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL"
        )
        session.commit()
    report = sweep_once(sessions, app, lease=timedelta(seconds=30), max_attempts=2)
    assert report is not None
    assert report.pruned_doorbells == 1 and report.rung == [build_id]
    with sessions() as session:
        assert doorbells(session, build_id) == ["todo"]


def test_cache_resets_and_releases_reach_every_worker(api: TestClient) -> None:
    url = api.app.state.shipyard.settings.resolved_database_url  # type: ignore[attr-defined]
    heard: list[tuple[str, str]] = []
    got = threading.Event()

    def on(channel: str) -> Callable[[str], None]:
        def handle(project_id: str) -> None:
            heard.append((channel, project_id))
            if len(heard) == 2:
                got.set()

        return handle

    listeners = [
        AbortListener(
            jobs.conninfo(url), lambda _id: None, {RESET_CACHE: on("reset"), RELEASE: on("release")}
        )
        for _ in range(2)
    ]
    for listener in listeners:
        listener.start()
    try:
        assert all(listener.listening.wait(5) for listener in listeners)
        assert isinstance(executor_of(api), ResourceHooks)
        start(api)  # project p, service web
        r = api.delete("/v1/projects/p/services/web/build-cache")
        assert r.status_code in (200, 204), r.text
        assert got.wait(5)
        assert sorted(heard) == [("reset", "p"), ("reset", "p")]
        heard.clear()
        got.clear()
        executor_of(api).release("p")
        assert got.wait(5)
        assert heard == [("release", "p"), ("release", "p")]
    finally:
        for listener in listeners:
            listener.stop()
