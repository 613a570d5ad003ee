"""The fault suite on PostgreSQL (issue 11): kill -9 and restart, SIGTERM, and the server's
database connections terminated while a build logs."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shipyard.pipeline.builder import unmount_under
from tests.faults.helpers import create_service, leftovers, start_build, wait_for_status
from tests.helpers.live import seed_base_image, start_server, stop_server
from tests.helpers.pg import ADMIN_URL, scratch_database
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_database("shipyard_faults") as url:
        yield url


def _terminate_backends(pg_url: str) -> int:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_kill9_while_building_then_restart_on_postgres(
    tmp_path: Path, sample_app: SampleApp, pg_url: str
) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    env = {"SHIPYARD_DATABASE_URL": pg_url, "SHIPYARD_MAX_CONCURRENT_BUILDS": "1"}
    proc, live = start_server(data, **env)
    try:
        svc = create_service(live, sample_app.url)
        build = start_build(live, svc, target="slow")
        queued = start_build(live, svc, target="final", arg="after")
        wait_for_status(live, svc, build, "BUILDING", log_text="sleep 300")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc, live = start_server(data, **env)
        assert live.wait(f"{svc}/build/{build}", timeout=10)["status"] == "CRASHED"
        assert live.wait(f"{svc}/build/{queued}", timeout=120)["status"] == "SUCCESS"
        assert leftovers(data) == []
    finally:
        stop_server(proc)
        unmount_under(store.root)


def test_sigterm_drains_on_postgres(tmp_path: Path, sample_app: SampleApp, pg_url: str) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    env = {"SHIPYARD_DATABASE_URL": pg_url, "SHIPYARD_MAX_CONCURRENT_BUILDS": "1"}
    proc, live = start_server(data, **env)
    try:
        svc = create_service(live, sample_app.url)
        running = start_build(live, svc, target="slow")
        wait_for_status(live, svc, running, "BUILDING", log_text="sleep 300")
        queued = start_build(live, svc, target="final", arg="queued")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert leftovers(data) == []
        proc, live = start_server(data, **env)
        done = live.wait(f"{svc}/build/{running}", timeout=10)
        assert done["status"] == "CRASHED" and "Shipyard was stopped" in done["message"]
        assert live.wait(f"{svc}/build/{queued}", timeout=120)["status"] == "SUCCESS"
    finally:
        stop_server(proc)
        unmount_under(store.root)


LINES = 3000
CHATTY = f"""\
FROM localhost/shipyard-test/busybox:latest
RUN i=0; while [ $i -lt {LINES} ]; do echo "chatty $i"; i=$((i+1)); \
      [ $((i % 100)) -eq 0 ] && sleep 0.2; done; echo done
"""


def test_terminated_connections_while_logging_lose_no_line(
    tmp_path: Path, sample_app: SampleApp, pg_url: str
) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(data, SHIPYARD_DATABASE_URL=pg_url)
    try:
        svc = create_service(live, sample_app.url)
        build = start_build(live, svc, dockerfile=CHATTY)
        wait_for_status(live, svc, build, "BUILDING", log_text="chatty 1")
        stop = threading.Event()
        killed = [0]

        def terminate() -> None:
            while not stop.wait(0.7):
                killed[0] += _terminate_backends(pg_url)

        killer = threading.Thread(target=terminate, daemon=True)
        killer.start()
        time.sleep(4)
        stop.set()
        killer.join()
        assert killed[0] > 0
        done = live.wait(f"{svc}/build/{build}", timeout=120)
        assert done["status"] == "SUCCESS", done
        with live.client() as c:
            lines = c.get(
                f"{svc}/build-logs",
                params={"buildId": build, "textIncludes": "chatty", "lineLimit": 10000},
            ).json()["data"]
        numbers = {int(m[1]) for line in lines if (m := re.fullmatch(r"chatty (\d+)", line["log"]))}
        assert numbers >= set(range(LINES)), f"{LINES - len(numbers)} lines lost"
    finally:
        stop_server(proc)
        unmount_under(store.root)
