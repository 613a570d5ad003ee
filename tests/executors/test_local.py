"""The local executor's rules (DESIGN.md "Running builds"), with a stand-in pipeline: claim
and fence by attempt, heartbeat-carried abort, lease expiry, crash recovery, shutdown."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.status import BuildStatus
from shipyard.executors.local import LocalExecutor
from shipyard.pipeline.errors import Cancelled, PipelineError
from shipyard.pipeline.run import BuildJob, Outcome, Reporter
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store.models import Build

Behaviour = Callable[[BuildJob, Reporter, threading.Event], Outcome]


@dataclass
class FakeRegistry:
    password: str | None = "registry-pass-word"


@dataclass
class FakePipeline:
    """Stands in for shipyard.pipeline.run.Pipeline (unit test of the executor only)."""

    behaviour: Behaviour
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    running: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self, job: BuildJob, report: Reporter, cancel: threading.Event, reuse: object = None
    ) -> Outcome:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.behaviour(job, report, cancel)
        finally:
            with self.lock:
                self.running -= 1


def succeed(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
    report.stage(BuildStatus.CLONING)
    report.resolved("a" * 40, "main")
    report.stage(BuildStatus.BUILDING)
    report.line("step 1 with registry-pass-word inside")
    report.stage(BuildStatus.UPLOADING)
    return Outcome(
        image=f"reg/{job.project_id}/{job.workload_slug}@sha256:{'b' * 64}",
        tag="t",
        digest="sha256:" + "b" * 64,
    )


def block_until_cancelled(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
    report.stage(BuildStatus.BUILDING)
    if not cancel.wait(30):
        raise AssertionError("never cancelled")
    raise Cancelled()


def slow_success(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
    time.sleep(0.3)
    return succeed(job, report, cancel)


@pytest.fixture
def sessions(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.shipyard.sessions  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def make_executor(
    client: TestClient, sessions: sessionmaker[Session]
) -> Iterator[Callable[..., LocalExecutor]]:
    made: list[LocalExecutor] = []

    def make(behaviour: Behaviour, **kw: Any) -> LocalExecutor:
        options = {"concurrency": 2, "heartbeat_s": 0.1, "lease_s": 5.0, **kw}
        executor = LocalExecutor(
            sessions, client.app.state.shipyard.box, FakePipeline(behaviour), **options
        )  # type: ignore[arg-type, attr-defined]
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.stop()


def start_builds(client: TestClient, targets: dict[str, str], n: int = 1) -> list[str]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    return [client.post(path, json={"branch": "main"}).json()["data"]["id"] for _ in range(n)]


def wait_for(sessions: sessionmaker[Session], build_id: str, timeout: float = 10) -> Build:
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            build = build_store.get_any(session, build_id)
            assert build is not None
            if build.concluded:
                return build
        assert time.monotonic() < deadline, f"{build_id} still {build.status}"
        time.sleep(0.05)


def test_runs_a_build_to_success(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    (build_id,) = start_builds(client, targets)
    executor = make_executor(succeed)
    executor.start()
    build = wait_for(sessions, build_id)
    assert (
        build.status == BuildStatus.SUCCESS
        and build.success
        and build.message == "Image successfully built"
    )
    assert build.sha == "a" * 40 and build.registry_uri and build.registry_uri.endswith("b" * 64)
    assert build.attempt == 1 and build.concluded_at is not None
    with sessions() as session:
        lines = [row.line for row in log_store.after_seq(session, build_id, -1, 1000)]
    assert "==> building" in lines and any("Image available at" in line for line in lines)
    assert not any("registry-pass-word" in line for line in lines)  # redacted before storage
    assert any("[REDACTED]" in line for line in lines)


def test_claim_is_exclusive_and_writes_are_fenced(
    client: TestClient, targets: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    (build_id,) = start_builds(client, targets)
    with sessions() as session:
        assert build_store.claim(session, build_id, "w1") == 1
        assert build_store.claim(session, build_id, "w2") is None
        # A stale worker (attempt 0) or a future one changes nothing.
        assert not build_store.fenced_update(session, build_id, 0, status=BuildStatus.BUILDING)
        assert not build_store.conclude(session, build_id, 2, BuildStatus.SUCCESS, "no")
        assert build_store.fenced_update(session, build_id, 1, status=BuildStatus.BUILDING)
        assert build_store.conclude(session, build_id, 1, BuildStatus.FAILURE, "x")
        assert not build_store.fenced_update(session, build_id, 1, status=BuildStatus.UPLOADING)
        session.commit()
        build = build_store.get_any(session, build_id)
        assert build is not None and build.status == BuildStatus.FAILURE


def test_concurrency_limit(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    project = targets["project"]
    # Two services (one build of a service runs at a time): both slots stay busy.
    project = targets["project"]
    paths = [
        (f"services/{targets['build']}", {"branch": "main"}),
        (f"services/{targets['combined']}", {}),
    ] * 2
    ids = [
        client.post(f"/v1/projects/{project}/{path}/build", json=body).json()["data"]["id"]
        for path, body in paths
    ]
    executor = make_executor(slow_success, concurrency=2)
    executor.start()
    for build_id in ids:
        assert wait_for(sessions, build_id).status == BuildStatus.SUCCESS
    assert executor._pipeline.peak == 2  # type: ignore[attr-defined]


def test_one_build_per_service_at_a_time(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    ids = start_builds(client, targets, 3)
    executor = make_executor(slow_success, concurrency=2)
    executor.start()
    builds = [wait_for(sessions, build_id) for build_id in ids]
    assert all(b.status == BuildStatus.SUCCESS for b in builds)
    assert executor._pipeline.peak == 1  # type: ignore[attr-defined]
    for earlier, later in itertools.pairwise(builds):
        assert earlier.concluded_at and later.started_at
        assert later.started_at >= earlier.concluded_at


def test_abort_reaches_the_worker_through_the_heartbeat(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    (build_id,) = start_builds(client, targets)
    executor = make_executor(block_until_cancelled)
    executor.start()
    deadline = time.monotonic() + 5
    while build_id not in executor.running():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with sessions() as session:  # as another process would: only the flag, no executor call
        build_store.request_abort(session, build_id)
        session.commit()
    build = wait_for(sessions, build_id, timeout=5)
    assert build.status == BuildStatus.ABORTED and build.message == "Build aborted"


def test_pipeline_failure_message(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    def fail(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
        raise PipelineError("Dockerfile not found at /Dockerfile")

    (build_id,) = start_builds(client, targets)
    make_executor(fail).start()
    build = wait_for(sessions, build_id)
    assert (
        build.status == BuildStatus.FAILURE
        and build.message == "Dockerfile not found at /Dockerfile"
    )


def test_unexpected_error_crashes_only_that_build(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    calls: list[str] = []

    def flaky(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
        calls.append(job.build_id)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return succeed(job, report, cancel)

    first, second = start_builds(client, targets, 2)
    make_executor(flaky, concurrency=1).start()
    assert wait_for(sessions, first).status == BuildStatus.CRASHED
    assert wait_for(sessions, second).status == BuildStatus.SUCCESS


def test_shutdown_ends_running_builds_crashed(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    (build_id,) = start_builds(client, targets)
    executor = make_executor(block_until_cancelled)
    executor.start()
    deadline = time.monotonic() + 5
    while build_id not in executor.running():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    executor.stop()
    build = wait_for(sessions, build_id)
    assert build.status == BuildStatus.CRASHED and "start the build again" in (build.message or "")


def test_draining_keeps_heartbeating_and_hears_aborts(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    """A shutdown stops claiming, not heartbeating: a build finishing within the grace keeps
    its lease (on a shared database another worker would otherwise sweep it) and an abort
    requested meanwhile still reaches it through the heartbeat."""
    (build_id,) = start_builds(client, targets)
    executor = make_executor(block_until_cancelled)
    executor.start()
    deadline = time.monotonic() + 5
    while build_id not in executor.running():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    draining = threading.Thread(target=executor.drain, args=(30.0,))
    draining.start()
    time.sleep(0.3)
    (queued,) = start_builds(client, targets)
    executor.submit(queued)
    with sessions() as session:
        before = build_store.get_any(session, build_id)
        assert before is not None and before.heartbeat_at is not None
    time.sleep(0.5)  # five heartbeat periods
    with sessions() as session:
        after = build_store.get_any(session, build_id)
        assert after is not None and after.heartbeat_at is not None
        assert after.heartbeat_at > before.heartbeat_at
        build_store.request_abort(session, build_id)
        session.commit()
    build = wait_for(sessions, build_id, timeout=5)
    assert build.status == BuildStatus.ABORTED
    draining.join(5)
    assert not draining.is_alive()
    with sessions() as session:
        still = build_store.get_any(session, queued)
        assert still is not None and still.status == BuildStatus.QUEUED  # nothing claimed


def test_recovery_of_builds_left_by_a_dead_process(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    dead, queued = start_builds(client, targets, 2)
    executor = make_executor(succeed)
    with sessions() as session:
        assert build_store.claim(session, dead, f"{executor.worker_prefix}999999999:old") == 1
        session.commit()
    executor.start()
    build = wait_for(sessions, dead)
    assert build.status == BuildStatus.CRASHED and build.message and "stopped" in build.message
    assert (
        wait_for(sessions, queued).status == BuildStatus.SUCCESS
    )  # queued work survives a restart


def test_expired_lease_ends_crashed(
    client: TestClient,
    targets: dict[str, str],
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    (build_id,) = start_builds(client, targets)
    with sessions() as session:
        build_store.claim(session, build_id, "procrastinate:other-host:1:x")
        session.execute(
            update(Build)
            .where(Build.id == build_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        session.commit()
    make_executor(succeed, lease_s=30).start()
    build = wait_for(sessions, build_id)
    assert build.status == BuildStatus.CRASHED and "lease expired" in (build.message or "")


def test_stored_ci_ignore_flags_reach_services_but_not_jobs(
    client: TestClient,
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    from shipyard.builds.relevant_commit import DEFAULT_CI_IGNORE_FLAGS, PathRules

    seen: dict[str, PathRules | None] = {}

    def record(job: BuildJob, report: Reporter, cancel: threading.Event) -> Outcome:
        seen[job.workload_slug] = job.path_rules
        return succeed(job, report, cancel)

    client.post("/v1/projects", json={"name": "flags"})
    configs: list[tuple[str, str, dict[str, Any]]] = [
        ("services/build", "default", {"ciIgnoreFlagsEnabled": True}),
        ("services/combined", "custom", {"ciIgnoreFlagsEnabled": True, "ciIgnoreFlags": ["[x]"]}),
        ("jobs/manual", "job", {"ciIgnoreFlagsEnabled": True, "pathIgnoreRules": ["docs/"]}),
        ("services/build", "off", {"ciIgnoreFlags": ["[x]"]}),
    ]
    build_ids = []
    for path, name, config in configs:
        body = {"name": name, "vcsData": {"projectUrl": "https://example.com/r.git",
                "projectBranch": "main"}, "buildConfiguration": config}  # fmt: skip
        r = client.post(f"/v1/projects/flags/{path}", json=body)
        assert r.status_code == 200, r.text
        kind = path.split("/")[0]
        start = {"branch": "main"} if path == "services/build" else {}
        r = client.post(f"/v1/projects/flags/{kind}/{name}/build", json=start)
        assert r.status_code == 200, r.text
        build_ids.append(r.json()["data"]["id"])
    make_executor(record).start()
    for build_id in build_ids:
        assert wait_for(sessions, build_id).status == BuildStatus.SUCCESS
    assert seen == {
        "default": PathRules((), False, DEFAULT_CI_IGNORE_FLAGS),
        "custom": PathRules((), False, ("[x]",)),
        "job": None,  # a job builds its branch's tip
        "off": None,  # flags not enabled, no path rules: nothing to walk for
    }


def test_start_forgets_worker_rows_of_dead_processes(
    client: TestClient,
    sessions: sessionmaker[Session],
    make_executor: Callable[..., LocalExecutor],
) -> None:
    from shipyard.store import workers as worker_store
    from shipyard.store.models import Worker

    executor = make_executor(succeed)
    dead_here = f"{executor.worker_prefix}999999999:old"
    with sessions() as session:
        worker_store.register(session, dead_here, "here", 999999999, 2)
        worker_store.register(session, "procrastinate:far:1:gone", "far", 1, 2)
        worker_store.register(session, "procrastinate:far:2:alive", "far", 2, 2)
        session.execute(
            update(Worker)
            .where(Worker.id == "procrastinate:far:1:gone")
            .values(last_heartbeat_at=datetime.now(UTC) - timedelta(days=2))
        )
        session.commit()
    executor.start()
    with sessions() as session:
        ids = {w.id for w in worker_store.listed(session)}
    assert ids == {executor.worker_id, "procrastinate:far:2:alive"}
