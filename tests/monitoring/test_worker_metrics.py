"""A worker's own metrics (the local executor with a stand-in pipeline): build duration and
queue wait by outcome, stage durations, its slots and heartbeat, served by the worker's
``/metrics`` server; and its row in ``workers`` while it runs."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.status import BuildStatus
from shipyard.executors.local import LocalExecutor
from shipyard.monitoring.worker import WorkerMetrics, serve_worker_metrics
from shipyard.pipeline.errors import PipelineError
from shipyard.store import workers as worker_store
from tests.executors.test_local import FakePipeline, start_builds, succeed, wait_for


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in:\n{text}")


def test_worker_metrics_and_worker_row(client: TestClient, targets: dict[str, str]) -> None:
    sessions: sessionmaker[Session] = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    calls: list[int] = []

    def first_fails(*args: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise PipelineError("no Dockerfile")
        return succeed(*args)  # type: ignore[arg-type]

    ok_and_failed = start_builds(client, targets, 2)
    executor = LocalExecutor(
        sessions, client.app.state.shipyard.box, FakePipeline(first_fails),  # type: ignore[arg-type, attr-defined]
        concurrency=2, heartbeat_s=0.05, lease_s=5.0,
    )  # fmt: skip
    server = serve_worker_metrics(0, executor.metrics)
    executor.start()
    try:
        outcomes = {wait_for(sessions, b).status for b in ok_and_failed}
        assert outcomes == {BuildStatus.FAILURE, BuildStatus.SUCCESS}
        with sessions() as session:
            (row,) = worker_store.listed(session)
        assert row.id == executor.worker_id and row.concurrency == 2
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        executor.stop()
        server.close()
    worker = f'worker="{executor.worker_id}"'
    assert sample(text, 'shipyard_build_duration_seconds_count{outcome="SUCCESS"}') == 1
    assert sample(text, 'shipyard_build_duration_seconds_count{outcome="FAILURE"}') == 1
    assert sample(text, 'shipyard_build_queue_wait_seconds_count{outcome="SUCCESS"}') == 1
    for stage in ("starting", "cloning", "building", "uploading"):
        assert sample(text, f'shipyard_build_stage_duration_seconds_count{{stage="{stage}"}}') >= 1
    assert sample(text, f"shipyard_process_build_slots{{{worker}}}") == 2
    assert sample(text, f"shipyard_process_running_builds{{{worker}}}") == 0
    assert sample(text, f"shipyard_process_heartbeat_age_seconds{{{worker}}}") >= 0
    with sessions() as session:
        assert worker_store.listed(session) == []  # a stopped worker removes its row


def test_unbound_metrics_have_only_histograms() -> None:
    text = generate_latest(WorkerMetrics().registry()).decode()
    assert "shipyard_build_duration_seconds" in text and "shipyard_process_" not in text


def test_the_worker_label_follows_an_identity_set_after_construction(client: TestClient) -> None:
    """A subclass (the scale-out worker) names itself after LocalExecutor.__init__."""
    sessions: sessionmaker[Session] = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    executor = LocalExecutor(
        sessions, client.app.state.shipyard.box, FakePipeline(succeed),  # type: ignore[arg-type, attr-defined]
        concurrency=3, heartbeat_s=1.0, lease_s=5.0,
    )  # fmt: skip
    executor.worker_id = "worker:elsewhere:1:abc"
    text = generate_latest(executor.metrics.registry()).decode()
    assert 'shipyard_process_build_slots{worker="worker:elsewhere:1:abc"} 3.0' in text
