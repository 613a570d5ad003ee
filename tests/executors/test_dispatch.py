"""The dispatch pass on SQLite and PostgreSQL: round robin across projects, the limits held by
the claim itself (also with many claimers at once), and the queued builds' ``Queued: …``
log lines, written once per reason."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.app import create_app
from shipyard.builds.fairness import Limits
from shipyard.builds.status import BuildStatus
from shipyard.executors.base import NullExecutor
from shipyard.executors.dispatch import Claim, Dispatcher
from shipyard.settings import Settings
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store import queue


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """An app on SQLite and on PostgreSQL (tests/executors/conftest.py)."""
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
        assert settings.admin_token is not None
        client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield client


def sessions_of(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.shipyard.sessions  # type: ignore[attr-defined, no-any-return]


class Queue:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.services: set[tuple[str, str]] = set()

    def build(self, project: str, service: str) -> str:
        if not any(p == project for p, _ in self.services):
            assert self.client.post("/v1/projects", json={"name": project}).status_code == 200
        if (project, service) not in self.services:
            body = {"name": service, "vcsData": {"projectUrl": "file:///nowhere"}}
            r = self.client.post(f"/v1/projects/{project}/services/build", json=body)
            assert r.status_code == 200, r.text
            self.services.add((project, service))
        r = self.client.post(
            f"/v1/projects/{project}/services/{service}/build", json={"branch": "main"}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["id"])


def eager(sessions: sessionmaker[Session], limits: Limits) -> Dispatcher:
    """A dispatcher that writes notices on every pass (not at most twice a second)."""
    return Dispatcher(sessions, limits, explain_every_s=0)


def finish(sessions: sessionmaker[Session], claim: Claim) -> None:
    with sessions() as session:
        assert build_store.conclude(
            session, claim.build_id, claim.attempt, BuildStatus.SUCCESS, "ok"
        )
        session.commit()


def notices(sessions: sessionmaker[Session], build_id: str) -> list[str]:
    with sessions() as session:
        rows = log_store.after_seq(session, build_id, -1, 100)
    assert all(row.attempt == 0 for row in rows)
    return [row.line for row in rows]


def test_projects_take_turns_and_services_build_one_at_a_time(api: TestClient) -> None:
    sessions, q = sessions_of(api), Queue(api)
    a1, a2, a3, a4 = (q.build("alpha", s) for s in ("one", "two", "one", "two"))
    dispatcher = eager(sessions, Limits(global_max=2))
    first = dispatcher.dispatch("w1", 2)
    assert [c.build_id for c in first] == [a1, a2] and {c.attempt for c in first} == {1}
    b1 = q.build("beta", "web")
    for _ in range(3):  # more passes: no new line while the reason stays the same
        assert dispatcher.dispatch("w1", 0) == []
    assert notices(sessions, a3) == [
        f"Queued: position 1 of 2; service one is already building {a1}"
    ]
    assert notices(sessions, a4) == [
        f"Queued: position 2 of 2; service two is already building {a2}"
    ]
    assert notices(sessions, b1) == [
        "Queued: position 1 of 3; waiting for a free build slot (2 of 2 running)"
    ]

    finish(sessions, first[0])  # a1 done: beta goes next, although a3 queued first
    (second,) = eager(sessions, Limits(global_max=2)).dispatch("w2", 1)
    assert second.build_id == b1
    # A fresh dispatcher (another process) read the last notices back: a4's reason is the
    # same, so it wrote nothing new for it; a3 now waits for a slot, not for its service.
    assert len(notices(sessions, a4)) == 1
    assert notices(sessions, a3)[-1] == (
        "Queued: position 1 of 2; waiting for a free build slot (2 of 2 running)"
    )
    finish(sessions, first[1])  # a2 done: a3 takes the free slot; a4 (service free) waits
    assert [c.build_id for c in dispatcher.dispatch("w1", 2)] == [a3]
    assert [c.build_id for c in dispatcher.dispatch("w1", 2)] == []
    assert notices(sessions, a4)[-1] == (
        "Queued: position 1 of 1; waiting for a free build slot (2 of 2 running)"
    )


def test_project_limit(api: TestClient) -> None:
    sessions, q = sessions_of(api), Queue(api)
    a1, a2 = q.build("alpha", "one"), q.build("alpha", "two")
    b1 = q.build("beta", "web")
    claims = eager(sessions, Limits(global_max=4, project_max=1)).dispatch("w", 4)
    assert [c.build_id for c in claims] == [a1, b1]
    assert notices(sessions, a2) == [
        "Queued: position 1 of 1; project limit: 1 of 1 builds of project alpha running"
    ]


def test_many_claimers_at_once_never_exceed_a_limit(api: TestClient) -> None:
    sessions, q = sessions_of(api), Queue(api)
    ids = [q.build(p, f"s{i}") for i in range(6) for p in ("alpha", "beta")]
    limits = Limits(global_max=5, project_max=3)
    claims: list[Claim] = []
    lock = threading.Lock()
    go = threading.Barrier(8)

    def claimer(n: int) -> None:
        dispatcher = eager(sessions, limits)
        go.wait()
        for _ in range(3):
            got = dispatcher.dispatch(f"w{n}", 2)
            with lock:
                claims.extend(got)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [c.build_id for c in claims]
    assert len(claimed) == len(set(claimed)) == 5  # the global limit, nobody twice
    assert set(claimed) <= set(ids)
    per_project = Counter("alpha" if ids.index(b) % 2 == 0 else "beta" for b in claimed)
    assert max(per_project.values()) == 3 and min(per_project.values()) == 2
    with sessions() as session:
        for build_id in claimed:
            build = build_store.get_any(session, build_id)
            assert build is not None and build.attempt == 1
            assert build.status == BuildStatus.STARTING


def test_a_claim_waits_for_the_one_in_flight(api: TestClient) -> None:
    """Two claims of different builds of one service at the same moment: the second waits
    for the first's transaction (the dispatch lock on PostgreSQL, the single writer on
    SQLite) and then sees the service busy."""
    sessions, q = sessions_of(api), Queue(api)
    q.build("alpha", "one"), q.build("alpha", "one")
    limits = Limits(global_max=5)
    with sessions() as session:
        first, second = queue.snapshot(session)[0]
    results: list[int | None] = []

    def other_claimer() -> None:
        with sessions() as session:
            queue.lock_dispatch(session)
            results.append(queue.claim_within(session, second, "w2", limits))
            session.commit()

    with sessions() as session:
        queue.lock_dispatch(session)
        assert queue.claim_within(session, first, "w1", limits) == 1
        thread = threading.Thread(target=other_claimer)
        if api.app.state.shipyard.settings.resolved_database_url.startswith("postgresql"):  # type: ignore[attr-defined]
            thread.start()
            thread.join(timeout=0.5)
            assert thread.is_alive() and not results  # blocked on the lock
        session.commit()
    if not thread.is_alive() and not results:
        thread.start()
    thread.join()
    assert results == [None]


def test_a_long_queue_of_one_service_writes_one_line_per_build(api: TestClient) -> None:
    sessions, q = sessions_of(api), Queue(api)
    ids = [q.build("alpha", "one") for _ in range(6)]
    dispatcher = eager(sessions, Limits(global_max=2))
    started = []
    while len(started) < len(ids):
        (claim,) = dispatcher.dispatch("w", 2)
        started.append(claim.build_id)
        finish(sessions, claim)
    assert started == ids  # in order, one at a time
    assert notices(sessions, ids[0]) == []
    for build_id in ids[1:]:
        (line,) = notices(sessions, build_id)
        assert re.fullmatch(r"Queued: position \d of \d; service one is already building \S+", line)


def test_fleet_metrics_and_worker_list(api: TestClient) -> None:
    """The database side of /metrics and GET /v1/workers, on both databases."""
    from shipyard.store import workers as worker_store

    sessions, q = sessions_of(api), Queue(api)
    a1, _ = q.build("alpha", "one"), q.build("alpha", "one")
    (claim,) = eager(sessions, Limits(global_max=2)).dispatch("w-1", 2)
    with sessions() as session:
        worker_store.register(session, "w-1", "host", 7, 2)
        session.commit()
    text = api.get("/metrics").text
    assert 'shipyard_queue_depth{project="alpha"} 1.0' in text
    assert 'shipyard_worker_running_builds{worker="w-1"} 1.0' in text
    assert 'shipyard_worker_up{hostname="host",worker="w-1"} 1.0' in text
    assert f'shipyard_build_heartbeat_age_seconds{{build_id="{a1}",worker="w-1"}}' in text
    (worker,) = api.get("/v1/workers").json()["data"]["workers"]
    assert worker["id"] == "w-1" and worker["alive"] and worker["builds"] == [claim.build_id]


def test_a_queued_build_with_an_abort_request_is_passed_over(api: TestClient) -> None:
    sessions, q = sessions_of(api), Queue(api)
    aborting, other = q.build("alpha", "one"), q.build("alpha", "two")
    with sessions() as session:
        assert build_store.request_abort(session, aborting)
        session.commit()
    claims = eager(sessions, Limits(global_max=2)).dispatch("w", 2)
    assert [c.build_id for c in claims] == [other]
    assert notices(sessions, aborting) == []
