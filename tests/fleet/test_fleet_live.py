"""A real fleet on loopback: ``shipyard up`` (API + embedded registry, no builds) and two
``shipyard worker`` processes on a scratch PostgreSQL database. Builds spread over both and
succeed on their first attempt; an abort reaches the worker over NOTIFY within 5 s; SIGTERM
hands a running build back; a SIGKILLed worker's build is re-queued within lease + sweep;
``up --with-worker`` builds alone."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.faults.helpers import create_service, start_build, wait_for_status
from tests.fleet.fleet import Fleet, TcpProxy, new_secret_key
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import BIN, LiveServer, running_containers_under
from tests.helpers.pg import scratch_database
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow

QUICK = "FROM scratch\nCOPY app.txt /app.txt\n"
SLOW = f"FROM {BUSYBOX_IMAGE}\nRUN echo sleeping && sleep 300\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with scratch_database("shipyard_scale_fleet") as url:
        fleet = Fleet(tmp_path_factory.mktemp("fleet"), url, new_secret_key())
        try:
            fleet.start_api()
            fleet.add_worker()
            fleet.add_worker()
            yield fleet
        finally:
            fleet.close()


def build(live: LiveServer, svc: str, build_id: str) -> dict[str, Any]:
    with live.client() as c:
        data: dict[str, Any] = c.get(f"{svc}/build/{build_id}").json()["data"]
        return data


def first_line(live: LiveServer, svc: str, build_id: str) -> str:
    return next(line for line in live.logs(f"{svc}/build-logs", build_id) if "attempt" in line)


def test_builds_spread_over_both_workers_and_succeed_first_time(
    fleet: Fleet, sample_app: SampleApp
) -> None:
    live = fleet.api
    assert live is not None
    services = [create_service(live, sample_app.url, name) for name in ("a", "b")]
    started = [
        (svc, start_build(live, svc, dockerfile=QUICK)) for _ in range(2) for svc in services
    ]
    holders = set()
    for svc, build_id in started:
        data = live.wait(f"{svc}/build/{build_id}", timeout=120)
        assert data["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)
        line = first_line(live, svc, build_id)
        assert "(attempt 1)" in line, line
        holders.add(line.rsplit(" on ", 1)[1])
    assert len(holders) == 2, holders
    listed = {w["id"]: w for w in fleet.listed()}
    assert holders <= set(listed)
    assert all(listed[h]["alive"] for h in holders)
    # `shipyard workers`: both, alive, with their last heartbeat.
    out = subprocess.run(
        [str(BIN / "shipyard"), "workers", "--output", "json"],
        env={"SHIPYARD_URL": live.url, "SHIPYARD_TOKEN": live.token, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = {row["id"]: row for row in json.loads(out.stdout)}
    assert holders <= set(rows)
    assert all(rows[h]["alive"] and rows[h]["lastHeartbeatAt"] for h in holders)
    for worker in fleet.workers:
        text = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
        assert "shipyard_build_duration_seconds" in text
        assert f'worker="{fleet.worker_ids(worker.pid)[0]}"' in text


def test_abort_reaches_the_worker_within_5_s(fleet: Fleet, sample_app: SampleApp) -> None:
    live = fleet.api
    assert live is not None
    svc = create_service(live, sample_app.url, "slow")
    build_id = start_build(live, svc, dockerfile=SLOW)
    wait_for_status(live, svc, build_id, "BUILDING", log_text="sleeping", timeout=120)
    began = time.monotonic()
    with live.client() as c:
        assert c.delete(f"{svc}/build/{build_id}").status_code in (200, 204)
    data = live.wait(f"{svc}/build/{build_id}", timeout=30)
    took = time.monotonic() - began
    assert data["status"] == "ABORTED"
    assert took < 5, f"abort took {took:.1f} s"
    print(f"abort: request → ABORTED seen in {took:.2f} s")
    for worker in fleet.workers:
        assert running_containers_under(worker.data_dir, build_id) == []


def running_on(fleet: Fleet, build_id: str) -> int:
    """Index of the worker holding ``build_id``."""
    for row in fleet.listed():
        if build_id in (row.get("builds") or []):
            return next(
                i for i, w in enumerate(fleet.workers) if w.proc and w.proc.pid == row["pid"]
            )
    raise AssertionError(f"{build_id} is held by no worker")


def wait_attempt(live: LiveServer, svc: str, build_id: str, attempt: int, timeout: float) -> float:
    """Seconds until the build's attempt ``attempt`` logs its first line."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if any(f"(attempt {attempt})" in line for line in live.logs(f"{svc}/build-logs", build_id)):
            return time.monotonic() - began
        time.sleep(0.3)
    raise AssertionError(
        f"attempt {attempt} never started: {live.logs(f'{svc}/build-logs', build_id)}"
    )


def test_sigterm_hands_a_running_build_back(fleet: Fleet, sample_app: SampleApp) -> None:
    live = fleet.api
    assert live is not None
    svc = create_service(live, sample_app.url, "handback")
    build_id = start_build(live, svc, dockerfile=SLOW)
    wait_for_status(live, svc, build_id, "BUILDING", log_text="sleeping", timeout=120)
    index = running_on(fleet, build_id)
    worker = fleet.workers[index]
    began = time.monotonic()
    assert fleet.stop_worker(worker, signal.SIGTERM, timeout=30) == 0
    stopped = time.monotonic() - began
    assert stopped < 15, f"worker took {stopped:.1f} s to stop"
    print(f"SIGTERM: worker exited in {stopped:.2f} s")
    assert running_containers_under(worker.data_dir, build_id) == []
    took = wait_attempt(live, svc, build_id, 2, timeout=30)
    print(f"SIGTERM: attempt 2 started elsewhere {took:.2f} s after the worker exited")
    assert any("handed back" in line for line in live.logs(f"{svc}/build-logs", build_id))
    assert running_on(fleet, build_id) != index
    with live.client() as c:
        c.delete(f"{svc}/build/{build_id}")
    assert live.wait(f"{svc}/build/{build_id}", timeout=30)["status"] == "ABORTED"
    fleet.start_worker(worker)


def test_a_killed_workers_build_is_requeued_within_a_minute(
    fleet: Fleet, sample_app: SampleApp
) -> None:
    live = fleet.api
    assert live is not None
    svc = create_service(live, sample_app.url, "killed")
    build_id = start_build(live, svc, dockerfile=SLOW)
    wait_for_status(live, svc, build_id, "BUILDING", log_text="sleeping", timeout=120)
    index = running_on(fleet, build_id)
    worker = fleet.workers[index]
    fleet.stop_worker(worker, signal.SIGKILL, timeout=10)
    took = wait_attempt(live, svc, build_id, 2, timeout=60)
    assert took < 60
    print(f"SIGKILL: attempt 2 started {took:.2f} s after the kill (lease 6 s, sweep 1 s)")
    assert any("was lost" in line for line in live.logs(f"{svc}/build-logs", build_id))
    with live.client() as c:
        c.delete(f"{svc}/build/{build_id}")
    assert live.wait(f"{svc}/build/{build_id}", timeout=30)["status"] == "ABORTED"
    # Its restart cleans what the killed process left (the old run's processes).
    fleet.start_worker(worker)
    deadline = time.monotonic() + 30
    while running_containers_under(worker.data_dir, build_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running_containers_under(worker.data_dir, build_id) == []


def test_a_worker_that_loses_the_database_stops_its_build_before_the_retry(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    """The watchdog: two runs of one build never overlap. Worker A reaches PostgreSQL
    through a proxy that is cut mid-build; A stops the build itself (watchdog 3 s) before
    its lease (6 s) runs out and worker B's sweep starts attempt 2."""
    with scratch_database("shipyard_scale_watchdog") as url:
        fleet = Fleet(tmp_path, url, new_secret_key())
        proxy = TcpProxy(int(urlsplit(url).port or 5432))
        try:
            live = fleet.start_api()
            proxied = urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{proxy.port}"))
            a = fleet.add_worker(SHIPYARD_DATABASE_URL=proxied)
            svc = create_service(live, sample_app.url, "cut")
            build_id = start_build(live, svc, dockerfile=SLOW)
            wait_for_status(live, svc, build_id, "BUILDING", log_text="sleeping", timeout=120)
            fleet.add_worker()  # B, straight to the database
            cut = time.monotonic()
            proxy.cut()
            while running_containers_under(a.data_dir, build_id):
                assert time.monotonic() - cut < 6, "A's build outlived its lease"
                time.sleep(0.2)
            stopped = time.monotonic() - cut
            print(f"watchdog: A's build processes gone {stopped:.2f} s after the cut")
            wait_attempt(live, svc, build_id, 2, timeout=60)
            retried = time.monotonic() - cut
            print(f"watchdog: attempt 2 on B {retried:.2f} s after the cut (lease 6 s)")
            assert retried > stopped  # the two runs did not overlap
            with live.client() as c:
                c.delete(f"{svc}/build/{build_id}")
            assert live.wait(f"{svc}/build/{build_id}", timeout=30)["status"] == "ABORTED"
        finally:
            proxy.close()
            fleet.close()


def test_up_with_worker_builds_alone(tmp_path: Path, sample_app: SampleApp) -> None:
    with scratch_database("shipyard_scale_solo") as url:
        fleet = Fleet(tmp_path, url, new_secret_key())
        try:
            live = fleet.start_api("--with-worker")
            svc = create_service(live, sample_app.url, "solo")
            build_id = start_build(live, svc, dockerfile=QUICK)
            data = live.wait(f"{svc}/build/{build_id}", timeout=120)
            assert data["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)
        finally:
            fleet.close()


def test_procrastinate_on_sqlite_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN / "shipyard"), "worker"],
        env={"SHIPYARD_EXECUTOR": "procrastinate", "SHIPYARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "needs PostgreSQL" in out.stderr
    out = subprocess.run(
        [str(BIN / "shipyard"), "up", "--with-worker"],
        env={"SHIPYARD_EXECUTOR": "procrastinate", "SHIPYARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "needs PostgreSQL" in out.stderr
