"""A hostile tenant against the per-build caps: memory, pids, log volume, line length.

A live server with small caps (64 MiB, 64 pids, 200 log lines, 256 MiB of disk) and the default network
policy; after each attack the server still answers other clients and no process of the
build is left.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.pipeline.builder import unmount_under
from tests.helpers.hostile import Service, Tenant, new_tenant
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import (
    LiveServer,
    remove_sandbox,
    running_containers_under,
    seed_base_image,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

FROM = f"FROM {BUSYBOX_IMAGE}\n"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("hostile-caps")
    data_dir = root / "data"
    store = seed_base_image(data_dir)
    proc, server = start_server(
        data_dir,
        SHIPYARD_BUILD_NETWORK="isolated",
        SHIPYARD_ALLOW_PRIVATE_URLS="false",
        SHIPYARD_BUILD_MEMORY_MB="64",
        SHIPYARD_BUILD_PIDS="64",
        SHIPYARD_BUILD_MAX_LOG_LINES="200",
        SHIPYARD_BUILD_DISK_GB="0.25",
    )
    try:
        yield server
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data_dir)


@pytest.fixture(scope="module")
def tenant(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return new_tenant(live, f"rtc{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("caps-repos"))


class Watcher:
    """Another client asking the API while a hostile build runs; records every request that
    failed or did not answer within a generous timeout."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.failures: list[str] = []
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.live.url,
            headers={"Authorization": f"Bearer {self.live.token}"},
            timeout=30,
        ) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/v1/login")
                    if r.status_code != 200:
                        self.failures.append(f"status {r.status_code}")
                    else:
                        self.answered += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(0.5)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def hostile_build(
    live: LiveServer, tenant: Tenant, dockerfile: str
) -> tuple[dict[str, Any], list[str], Watcher]:
    service: Service = tenant.service({"Dockerfile": dockerfile})
    with Watcher(live) as watcher:
        build_id = service.start()
        build = service.wait(build_id, timeout=300)
    logs = service.logs(build_id)
    deadline = time.monotonic() + 30
    while left := running_containers_under(live.data_dir, build_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"build {build_id} left processes: {left}")
        time.sleep(0.5)
    assert watcher.failures == [] and watcher.answered > 0, watcher.failures
    with live.client() as c:
        assert c.get("/v1/login").status_code == 200
    return build, logs, watcher


def test_memory_hog_fails_naming_the_memory_cap(live: LiveServer, tenant: Tenant) -> None:
    # dd fills a 300 MiB buffer: really held memory, not a stream.
    build, logs, _ = hostile_build(
        live, tenant, FROM + "RUN dd if=/dev/zero of=/dev/null bs=300M count=1\n"
    )
    assert build["status"] == "FAILURE", (build, logs[-10:])
    assert "memory" in build["message"] and "64 MiB" in build["message"], build
    assert "SHIPYARD_BUILD_MEMORY_MB" in build["message"]


def test_memory_hog_in_a_shell_variable(live: LiveServer, tenant: Tenant) -> None:
    build, logs, _ = hostile_build(
        live, tenant, FROM + "RUN x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}\n"
    )
    assert build["status"] == "FAILURE", (build, logs[-10:])
    assert "SHIPYARD_BUILD_MEMORY_MB" in build["message"], build


def test_fork_bomb_fails_and_the_server_answers(live: LiveServer, tenant: Tenant) -> None:
    build, logs, _ = hostile_build(
        live,
        tenant,
        FROM + "RUN i=0; while [ $i -lt 1000 ]; do sleep 120 & i=$((i+1)); done; wait\n",
    )
    assert build["status"] == "FAILURE", (build, logs[-10:])
    # Either the kernel's cap is named, or the step failed on a fork it could not make.
    assert "SHIPYARD_BUILD_PIDS" in build["message"] or "failed" in build["message"], build


def test_recursive_fork_bomb(live: LiveServer, tenant: Tenant) -> None:
    build, logs, _ = hostile_build(
        live, tenant, FROM + "RUN b() { b | b & }; b; sleep 20; exit 1\n"
    )
    assert build["status"] == "FAILURE", (build, logs[-10:])


def test_one_50_mb_line_is_cut_while_read(live: LiveServer, tenant: Tenant) -> None:
    build, logs, _ = hostile_build(
        live,
        tenant,
        FROM + "RUN head -c 50000000 /dev/zero | tr '\\0' a; echo; echo AFTER-LONG-LINE\n",
    )
    assert build["status"] == "SUCCESS", (build, logs[-10:])
    cut = [line for line in logs if "[line cut at" in line or "…[truncated]" in line]
    assert cut and all(len(line) < 100_000 for line in logs), [len(x) for x in logs]
    assert "AFTER-LONG-LINE" in logs


def test_log_flood_is_truncated_and_the_build_goes_on(
    live: LiveServer, tenant: Tenant, tmp_path: Path
) -> None:
    build, logs, _ = hostile_build(
        live, tenant, FROM + "RUN seq 1 50000\nRUN echo NOT-LOGGED-AFTER-CAP\n"
    )
    assert build["status"] == "SUCCESS", (build, logs[-10:])
    assert any("log truncated" in line for line in logs), logs[-5:]
    assert len(logs) < 260, len(logs)
    assert "NOT-LOGGED-AFTER-CAP" not in logs
    assert "50000" not in logs


def test_filling_the_disk_fails_naming_the_disk_cap(live: LiveServer, tenant: Tenant) -> None:
    build, logs, _ = hostile_build(
        live, tenant, FROM + "RUN dd if=/dev/zero of=/big bs=1M count=400\n"
    )
    assert build["status"] == "FAILURE", (build, logs[-10:])
    assert build["message"].startswith("no space left on device while building"), build
    assert "disk" in build["message"] and "SHIPYARD_BUILD_DISK_GB" in build["message"], build
    # The cap is the project's own file system: the host's disk was never at risk, and the
    # project can build again once the failed step's layer is gone.
    again, logs, _ = hostile_build(live, tenant, FROM + "RUN echo still-builds\n")
    assert again["status"] == "SUCCESS", (again, logs[-10:])
