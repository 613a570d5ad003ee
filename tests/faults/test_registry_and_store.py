"""Faults injected for real (issue 11): the embedded registry killed or frozen, the
database's disk full while a build logs, aborts at random moments."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.pipeline.builder import unmount_under
from tests.faults.helpers import create_service, leftovers, start_build, wait_for_status
from tests.helpers.live import (
    LiveServer,
    sandbox_dir,
    seed_base_image,
    start_server,
    stop_server,
)
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    env: dict[str, str] = getattr(request, "param", {})
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(data, **env)
    try:
        yield live
    finally:
        stop_server(proc)
        unmount_under(store.root)


def _registry_pid(live: LiveServer) -> int:
    return int((live.data_dir / "registry.pid").read_text())


def test_killed_registry_is_restarted_and_the_next_build_succeeds(
    server: LiveServer, sample_app: SampleApp
) -> None:
    svc = create_service(server, sample_app.url)
    old = _registry_pid(server)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _registry_pid(server) == old:
        assert time.monotonic() < deadline, "the registry was not restarted"
        time.sleep(0.2)
    build = start_build(server, svc, target="final", arg="after-restart")
    assert server.wait(f"{svc}/build/{build}", timeout=120)["status"] == "SUCCESS"
    assert "restarting it" in server.log_path.read_text()


@pytest.mark.parametrize("server", [{"SHIPYARD_PUSH_STALL_TIMEOUT_S": "3"}], indirect=True)
def test_frozen_registry_mid_push_fails_the_build_soon(
    server: LiveServer, sample_app: SampleApp
) -> None:
    svc = create_service(server, sample_app.url)
    pid = _registry_pid(server)
    build = start_build(server, svc, target="final", arg="frozen")
    wait_for_status(server, svc, build, "BUILDING")
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        done = server.wait(f"{svc}/build/{build}", timeout=90)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done["status"] == "FAILURE", done
    assert "made no progress" in done["message"], done
    assert "http" not in done["message"] and "_state" not in done["message"]
    assert time.monotonic() - began < 60


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "dbdisk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


CHATTY = """\
FROM localhost/shipyard-test/busybox:latest
RUN i=0; while [ $i -lt 100000 ]; do \
      echo "line $i of a chatty build that fills the log store quickly"; i=$((i+1)); \
      [ $((i % 200)) -eq 0 ] && sleep 0.05; done
"""


def test_disk_full_while_logging_ends_the_build_failure(
    tmp_path: Path, sample_app: SampleApp, small_disk: Path
) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(
        data,
        SHIPYARD_DATABASE_URL=f"sqlite:///{small_disk / 'shipyard.db'}",
        SHIPYARD_DISK_RESERVE_MB="1",
    )
    try:
        svc = create_service(live, sample_app.url)
        deadline = time.monotonic() + 10
        while not (small_disk / ".shipyard-disk-reserve").exists():
            assert time.monotonic() < deadline, "no disk reserve was made"
            time.sleep(0.2)
        build = start_build(live, svc, dockerfile=CHATTY)
        wait_for_status(live, svc, build, "BUILDING", log_text="chatty build")
        filler = small_disk / "filler"
        try:
            # Under load the build's own log may have filled the disk already: then even
            # creating the filler fails, which is the state this test wants.
            with filler.open("wb") as f:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        filled = time.monotonic()
        done = live.wait(f"{svc}/build/{build}", timeout=60)
        assert done["status"] == "FAILURE", done
        assert "no space left on device while storing the build's log" in done["message"]
        assert time.monotonic() - filled < 15
        with live.client() as c:  # the server stays up
            assert c.get("/v1/projects").status_code == 200
        assert leftovers(data) == []
    finally:
        stop_server(proc)
        unmount_under(store.root)


@pytest.mark.parametrize(
    "server",
    [{"SHIPYARD_MAX_CONCURRENT_BUILDS": "2", "SHIPYARD_SERVICE_MAX_RUNNING": "0"}],
    indirect=True,
)
def test_aborts_at_random_moments_leave_nothing(server: LiveServer, sample_app: SampleApp) -> None:
    """A hundred builds (SHIPYARD_TEST_ABORTS), two of one project at a time, each aborted 0 to
    1.5 s after it was started (in buildah's first moments, during the source fetch, in RUN):
    nothing is left."""
    svc = create_service(server, sample_app.url)
    rng = random.Random(11)
    builds: list[str] = []
    with server.client() as c:
        for i in range(int(os.environ.get("SHIPYARD_TEST_ABORTS", "100"))):
            build = start_build(server, svc, target="slow", arg=f"a{i}")
            builds.append(build)
            time.sleep(rng.uniform(0.0, 1.5))
            r = c.delete(f"{svc}/build/{build}")
            assert r.status_code in (200, 409), r.text
    for build in builds:
        done = server.wait(f"{svc}/build/{build}", timeout=120)
        # A RUN killed by the abort fails, but the build was stopped, not broken.
        if done["status"] not in ("ABORTED", "SUCCESS"):
            tail = server.logs(f"{svc}/build-logs", build)[-25:]
            pytest.fail(f"{build} ended {done['status']}: {done['message']}\n" + "\n".join(tail))
    deadline = time.monotonic() + 10
    while (left := leftovers(server.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)  # the idle store's sweep runs as the last build leaves
    runc_dirs = sorted(sandbox_dir(server.data_dir).glob("*/home/run/runc/*"))
    assert left == [], [(d.name, sorted(f.name for f in d.iterdir())) for d in runc_dirs]
