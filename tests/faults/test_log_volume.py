"""A build that prints 2 M lines (issue 11, item 9: one such build left a 238 MB database):
its stored log stops at the per-build cap with a line saying where, the build goes on and
succeeds; then log retention removes the log, the API says so, and the SQLite file shrinks."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from shipyard.pipeline.builder import unmount_under
from tests.faults.helpers import GIT_ENV, create_service, start_build
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import remove_sandbox, seed_base_image, start_server, stop_server

pytestmark = pytest.mark.slow

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
RUN seq 1 2000000
RUN echo after-the-flood
"""
MAX_LINES = 100_000  # SHIPYARD_BUILD_MAX_LOG_LINES's default


def _repository(root: Path) -> str:
    work, bare = root / "work", root / "flood.git"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True, env=GIT_ENV)
    (work / "Dockerfile").write_text(DOCKERFILE)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "commit", "-qm", "flood"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True, env=GIT_ENV)
    return f"file://{bare}"


def _stored_lines(database: Path, build: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM build_logs WHERE build_id = ?", (build,)
        ).fetchone()
    return int(n)


def _size(database: Path) -> int:
    """The database with its WAL (what the disk holds)."""
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_two_million_lines_are_capped_then_expired(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = seed_base_image(data)
    repo = _repository(tmp_path / "repo")
    # Retention by age of 43 s, checked every 2 s: the build's log goes soon after it ends.
    proc, live = start_server(
        data, SHIPYARD_LOG_RETENTION_DAYS="0.0005", SHIPYARD_LOG_RETENTION_INTERVAL_S="2"
    )
    database = data / "shipyard.db"
    try:
        svc = create_service(live, repo, name="flood")
        build = start_build(live, svc)
        done = live.wait(f"{svc}/build/{build}", timeout=600)
        assert done["status"] == "SUCCESS", done
        stored = _stored_lines(database, build)
        assert MAX_LINES < stored <= MAX_LINES + 40, stored  # none lost below the cap
        size = _size(database)
        print(f"\n2 M lines printed: {stored} stored, database {size} bytes")
        assert size < 32 << 20
        with live.client() as c:
            logs = f"{svc}/build-logs"
            marker = c.get(logs, params={"buildId": build, "textIncludes": "log truncated"})
            (line,) = [x["log"] for x in marker.json()["data"]]
            assert line.startswith(f"… log truncated at line {MAX_LINES} ("), line
            assert "SHIPYARD_BUILD_MAX_LOG_LINES=100000" in line
            assert "the build goes on" in line
            success = c.get(logs, params={"buildId": build, "textIncludes": "==> success"})
            assert success.json()["data"], "the outcome line is stored past the cap"
            # Retention: the log goes, the API says so.
            deadline = time.monotonic() + 180
            while "logsExpiredAt" not in (got := c.get(f"{svc}/build/{build}").json()["data"]):
                assert time.monotonic() < deadline, got
                time.sleep(1)
            lines = [x["log"] for x in c.get(logs, params={"buildId": build}).json()["data"]]
        assert len(lines) == 1 and "removed by log retention" in lines[0], lines
        assert "SHIPYARD_LOG_RETENTION_DAYS" in lines[0]
        assert _stored_lines(database, build) == 1
        after = _size(database)
        print(f"after retention: database {after} bytes")
        assert database.stat().st_size < size
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data)
