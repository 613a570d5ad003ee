"""A build that runs too long, and a Shipyard killed mid-build then restarted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from shipyard.pipeline.builder import unmount_under
from tests.helpers.live import (
    LiveServer,
    running_containers_under,
    sandbox_dir,
    seed_base_image,
    start_server,
    stop_server,
)
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow


def create_service(live: LiveServer, repo: str) -> str:
    with live.client() as c:
        c.post("/v1/projects", json={"name": "p"})
        c.post("/v1/projects/p/services/build", json={"name": "s", "vcsData": {"projectUrl": repo}})
    return "/v1/projects/p/services/s"


def start_slow(live: LiveServer, svc: str) -> str:
    with live.client() as c:
        r = c.post(
            f"{svc}/build",
            json={"branch": "main", "overrides": {"docker": {"dockerfileTarget": "slow"}}},
        )
        return str(r.json()["data"]["id"])


def wait_for_sleep(live: LiveServer, svc: str, build_id: str) -> None:
    deadline = time.monotonic() + 60
    with live.client() as c:
        while not c.get(
            f"{svc}/build-logs", params={"buildId": build_id, "textIncludes": "sleep 300"}
        ).json()["data"]:
            assert time.monotonic() < deadline, "never reached RUN sleep 300"
            time.sleep(0.2)
    time.sleep(0.5)


def test_build_timeout_ends_failure(tmp_path: Path, sample_app: SampleApp) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(data, SHIPYARD_BUILD_TIMEOUT_S="4")
    try:
        svc = create_service(live, sample_app.url)
        build = live.wait(f"{svc}/build/{start_slow(live, svc)}", timeout=30)
        assert build["status"] == "FAILURE" and "timed out after 4 s" in build["message"]
        assert running_containers_under(data) == []
    finally:
        stop_server(proc)
        unmount_under(store.root)


def test_killed_server_leaves_crashed_builds_and_no_processes(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(data, SHIPYARD_MAX_CONCURRENT_BUILDS="1")
    try:
        svc = create_service(live, sample_app.url)
        running = start_slow(live, svc)
        wait_for_sleep(live, svc, running)
        with live.client() as c:  # one slot: this one stays QUEUED while the other runs
            queued = c.post(
                f"{svc}/build",
                json={"branch": "main", "overrides": {"docker": {"dockerfileTarget": "base"}}},
            ).json()["data"]["id"]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert running_containers_under(data, running), (
            "expected the RUN step to survive SIGKILL (DESIGN.md)"
        )
        assert any(sandbox_dir(data).glob("*/work/*"))
    except BaseException:
        stop_server(proc)
        raise
    proc, live = start_server(data)  # same data dir: recovery and the janitor run at start
    try:
        build = live.wait(f"{svc}/build/{running}", timeout=30)
        assert build["status"] == "CRASHED" and "start the build again" in build["message"]
        assert running_containers_under(data, running) == [], (
            "the janitor should have stopped the RUN step"
        )
        # Queued work survives the crash and runs after the restart.
        assert live.wait(f"{svc}/build/{queued}", timeout=60)["status"] == "SUCCESS"
        assert list(sandbox_dir(data).glob(f"*/work/{running}-*")) == []
        # The registry is back (401: it wants a token, as always).
        assert httpx.get(f"http://{live.registry}/v2/", timeout=5).status_code == 401
    finally:
        stop_server(proc)
        unmount_under(store.root)
