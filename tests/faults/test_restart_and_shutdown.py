"""Faults injected for real on a live Shipyard (issue 11): kill -9 in a stage then restart,
SIGTERM with builds running and queued and a log stream attached."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from shipyard.pipeline.builder import unmount_under
from tests.faults.helpers import (
    create_service,
    git_processes_under,
    hanging_repository,
    kill_processes_under,
    leftovers,
    start_build,
    wait_for_status,
)
from tests.helpers.live import (
    LiveServer,
    seed_base_image,
    start_server,
    stop_server,
)
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow

# Restart time is a speed target (bench); here it only has to be no slower than a first start
# beyond a margin: the faults it guards against (waiting out TIME-WAIT sockets, a stuck
# orphan) cost tens of seconds.
RESTART_MARGIN_S = 5.0
CONCLUDE_LIMIT_S = 10.0


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _start(data: Path, **env: str) -> tuple[subprocess.Popen[bytes], float, LiveServer]:
    began = time.monotonic()
    proc, live = start_server(data, **env)
    return proc, time.monotonic() - began, live


def test_kill9_while_building_then_restart(tmp_path: Path, sample_app: SampleApp) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, first, live = _start(data)
    try:
        svc = create_service(live, sample_app.url)
        build = start_build(live, svc, target="slow")
        wait_for_status(live, svc, build, "BUILDING", log_text="sleep 300")
        _kill9(proc)
        assert leftovers(data, build), "expected the RUN step to outlive SIGKILL (DESIGN.md)"
        proc, took, live = _start(data)
        assert took < first + RESTART_MARGIN_S, (
            f"restart took {took:.1f} s, first start {first:.1f} s"
        )
        concluded = live.wait(f"{svc}/build/{build}", timeout=CONCLUDE_LIMIT_S)
        assert concluded["status"] == "CRASHED", concluded
        assert leftovers(data) == []
    finally:
        stop_server(proc)
        unmount_under(store.root)


def test_kill9_while_cloning_kills_the_old_git(tmp_path: Path, sample_app: SampleApp) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    repo, sha = hanging_repository(tmp_path / "hang")
    proc, first, live = _start(data)
    try:
        svc = create_service(live, repo, name="hang")
        build = start_build(live, svc, sha=sha)
        wait_for_status(live, svc, build, "CLONING")
        deadline = time.monotonic() + 20
        while not git_processes_under(tmp_path / "hang"):
            assert time.monotonic() < deadline, "git never started"
            time.sleep(0.2)
        _kill9(proc)
        assert git_processes_under(tmp_path / "hang"), "git should outlive the server's SIGKILL"
        proc, took, live = _start(data)
        assert took < first + RESTART_MARGIN_S, (
            f"restart took {took:.1f} s, first start {first:.1f} s"
        )
        concluded = live.wait(f"{svc}/build/{build}", timeout=CONCLUDE_LIMIT_S)
        assert concluded["status"] == "CRASHED", concluded
        assert git_processes_under(tmp_path / "hang") == []
        assert leftovers(data) == []
    finally:
        stop_server(proc)
        kill_processes_under(tmp_path / "hang")
        unmount_under(store.root)


def test_sigterm_drains_running_builds_keeps_queued_and_ends_streams(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    grace = 2.0
    env = {
        "SHIPYARD_MAX_CONCURRENT_BUILDS": "2",
        "SHIPYARD_SHUTDOWN_GRACE_S": str(grace),
        # Two running builds of the one service: lift the one-build-per-service rule.
        "SHIPYARD_SERVICE_MAX_RUNNING": "0",
    }
    proc, live = start_server(data, **env)
    try:
        svc = create_service(live, sample_app.url)
        running = [start_build(live, svc, target="slow") for _ in range(2)]
        for build in running:
            wait_for_status(live, svc, build, "BUILDING", log_text="sleep 300")
        queued = [start_build(live, svc, target="final", arg=str(i)) for i in range(3)]
        # A live log stream of a queued build: it must not hold the exit.
        streamed: list[str] = []

        def stream() -> None:
            with (
                live.client() as c,
                c.stream(
                    "GET", f"{svc}/build-logs/stream", params={"buildId": queued[0]}, timeout=120
                ) as r,
            ):
                for line in r.iter_lines():
                    streamed.append(line)

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        time.sleep(0.5)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - began
        assert took < grace + 15, f"shutdown took {took:.1f} s"
        reader.join(timeout=5)
        assert not reader.is_alive(), "the log stream was not ended by the shutdown"
        assert leftovers(data) == [], "a build process outlived the shutdown"
        log = live.log_path.read_text()
        assert "shutting down" in log
        proc, live = start_server(data, **env)
        with live.client() as c:
            for build in running:
                data_ = c.get(f"{svc}/build/{build}").json()["data"]
                assert data_["status"] == "CRASHED", data_
                assert "Shipyard was stopped" in data_["message"]
        for build in queued:
            done = live.wait(f"{svc}/build/{build}", timeout=120)
            if done["status"] != "SUCCESS":
                tail = live.logs(f"{svc}/build-logs", build)[-25:]
                pytest.fail(
                    f"{build} ended {done['status']}: {done['message']}\n" + "\n".join(tail)
                )
    finally:
        stop_server(proc)
        unmount_under(store.root)


def test_restart_right_after_sigterm_finds_the_registry_port(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    """A push leaves the registry's sockets in TIME-WAIT: a restart at once must work."""
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, first, live = _start(data)
    try:
        svc = create_service(live, sample_app.url)
        build = start_build(live, svc, target="final")
        assert live.wait(f"{svc}/build/{build}", timeout=120)["status"] == "SUCCESS"
        stop_server(proc)
        proc, took, live = _start(data)
        assert took < first + RESTART_MARGIN_S, (
            f"restart took {took:.1f} s, first start {first:.1f} s"
        )
        assert httpx.get(f"http://{live.registry}/v2/", timeout=5).status_code == 401
    finally:
        stop_server(proc)
        unmount_under(store.root)


def test_kill9_while_uploading_then_restart_runs_the_queue(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    """kill -9 while a push hangs on a frozen registry, with a build queued behind it: the
    restart stops the orphaned (frozen) registry, concludes the pushing build and runs the
    queued one."""
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, first, live = _start(data, SHIPYARD_MAX_CONCURRENT_BUILDS="1")
    registry_pid = int((data / "registry.pid").read_text())
    try:
        svc = create_service(live, sample_app.url)
        pushing = start_build(live, svc, target="final", arg="pushing")
        queued = start_build(live, svc, target="final", arg="queued")
        wait_for_status(live, svc, pushing, "BUILDING")
        os.kill(registry_pid, signal.SIGSTOP)
        wait_for_status(live, svc, pushing, "UPLOADING")
        time.sleep(1)  # the push is under way against the frozen registry
        _kill9(proc)
        proc, took, live = _start(data, SHIPYARD_MAX_CONCURRENT_BUILDS="1")
        assert took < first + RESTART_MARGIN_S, (
            f"restart took {took:.1f} s, first start {first:.1f} s"
        )
        concluded = live.wait(f"{svc}/build/{pushing}", timeout=CONCLUDE_LIMIT_S)
        assert concluded["status"] == "CRASHED", concluded
        assert live.wait(f"{svc}/build/{queued}", timeout=180)["status"] == "SUCCESS"
        assert leftovers(data) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(registry_pid, signal.SIGCONT)
        stop_server(proc)
        unmount_under(store.root)
