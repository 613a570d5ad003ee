"""shipyard.client against a live server (``shipyard up``): real git, buildah and registry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from shipyard.client import AsyncShipyard, Build, LogLine, Shipyard, ShipyardError, Workload
from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow

PROJECT = "sdk"
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def sy(live: LiveServer) -> Iterator[Shipyard]:
    with Shipyard(live.url, live.token) as client:
        yield client


@pytest.fixture(scope="module")
def service(sy: Shipyard, sample_app: SampleApp) -> Workload:
    project = sy.create_project("SDK", "made by shipyard.client")
    assert project.id == PROJECT
    assert PROJECT in {p.id for p in sy.list_projects()}
    service = sy.create_service(PROJECT, "builder", kind="build", repo_url=sample_app.url)
    assert (service.id, service.entity, service.kind) == ("builder", "service", "build")
    assert [s.id for s in sy.list_services(PROJECT)] == ["builder"]
    return service


def test_build_follow_logs_wait_and_list(
    sy: Shipyard, service: Workload, sample_app: SampleApp, live: LiveServer
) -> None:
    key = str(uuid.uuid4())
    build = sy.start_service_build(
        PROJECT, service.id, branch="main", target="base", idempotency_key=key
    )
    assert build.status in {"QUEUED", "PENDING"} and not build.concluded
    assert (build.project_id, build.service_id) == (PROJECT, service.id)
    again = sy.start_service_build(
        PROJECT, service.id, branch="main", target="base", idempotency_key=key
    )
    assert again.id == build.id

    followed = list(sy.follow_logs(build))
    logs = [line.log for line in followed]
    assert "==> building" in logs, logs
    assert all(isinstance(line, LogLine) and line.container_id for line in followed)

    done = sy.wait(build, poll_s=0.2, timeout_s=TIMEOUT_S)
    assert done.status == "SUCCESS", (done, logs[-20:])
    assert done.concluded and done.success and done.sha == sample_app.main_sha
    assert done.branch == "main" and done.concluded_at is not None
    assert done.registry_uri is not None
    assert done.registry_uri.startswith(f"{live.registry}/{PROJECT}/{service.id}@sha256:")

    ranged = sy.build_logs(done, line_limit=10_000)
    assert [line.log for line in ranged] == logs
    last = sy.build_logs(
        PROJECT, build_id=done.id, service_id=service.id, line_limit=1, direction="backward"
    )
    assert last == ranged[-1:]

    listed = {b.id: b for b in sy.list_builds(PROJECT, service.id)}
    assert listed[build.id].status == "SUCCESS"
    assert listed[build.id].ref == done.ref


def test_abort_a_running_build(sy: Shipyard, service: Workload) -> None:
    build = sy.start_service_build(PROJECT, service.id, branch="main", target="slow")
    for line in sy.follow_logs(build):  # leave the stream once the slow step runs
        if "sleep 300" in line.log:
            break
    assert sy.get_build(build).status == "BUILDING"

    aborted = sy.abort_build(build)
    final = sy.wait(aborted, poll_s=0.2, timeout_s=60)
    assert final.status == "ABORTED" and final.concluded and not final.success

    with pytest.raises(ShipyardError) as again:
        sy.abort_build(final)
    assert again.value.status == 409

    # two builds at least now: one per page
    pages = list(sy.list_builds(PROJECT, service_id=service.id, per_page=1))
    assert [b.id for b in pages][:1] == [build.id]  # newest first
    assert len(pages) == len({b.id for b in pages}) >= 2


def test_errors_carry_the_api_status_and_message(
    sy: Shipyard, service: Workload, live: LiveServer
) -> None:
    with pytest.raises(ShipyardError) as bad_sha:
        sy.start_service_build(PROJECT, service.id, sha="abc", branch="main")
    assert bad_sha.value.status == 400
    assert "sha" in bad_sha.value.message and "sha" in bad_sha.value.details

    with pytest.raises(ShipyardError) as no_branch:  # a build service needs branch or PR
        sy.start_service_build(PROJECT, service.id)
    assert no_branch.value.status == 400

    with pytest.raises(ShipyardError) as unknown:
        sy.get_build(PROJECT, build_id="no-such-build", service_id=service.id)
    assert unknown.value.status == 404

    with Shipyard(live.url, "wrong-token") as anonymous, pytest.raises(ShipyardError) as denied:
        anonymous.get_project(PROJECT)
    assert denied.value.status == 401


def test_async_client_starts_and_waits(
    live: LiveServer, service: Workload, sample_app: SampleApp
) -> None:
    async def scenario() -> tuple[Build, Build, list[str]]:
        async with AsyncShipyard(live.url, live.token) as sy:
            build = await sy.start_service_build(
                PROJECT, service.id, pull_request_id=5, target="base"
            )
            logs = [line.log async for line in sy.follow_logs(build)]
            done = await sy.wait(build, poll_s=0.2, timeout_s=TIMEOUT_S)
            return build, done, logs

    build, done, logs = asyncio.run(scenario())
    assert not build.concluded
    assert done.status == "SUCCESS", (done, logs[-20:])
    assert done.pull_request_id == 5 and done.sha == sample_app.pr_sha
    assert "==> building" in logs
