"""SQLite holds load (issue 11): a live Shipyard on its embedded default (SQLite, two build
slots) with real builds running — each writes a few thousand log lines — while 16 and then 64
concurrent clients start builds, list them, get them and read their logs for a bounded time.
No request may get a 5xx (or no answer), and no build may end ``CRASHED`` (a starved
heartbeat) or ``FAILURE`` (a starved log writer). Latencies are printed, not asserted: the
figures are ``python -m bench load``'s (60 s at 16 / 32 / 64 clients)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.mixload import run_mix
from shipyard.pipeline.builder import unmount_under
from tests.faults.helpers import GIT_ENV, create_service, start_build
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import (
    LiveServer,
    remove_sandbox,
    seed_base_image,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

SECONDS = 15.0
RUNNING = {"QUEUED", "STARTING", "CLONING", "BUILDING", "UPLOADING"}
# A RUN step that logs (the log writer works under the load) and takes a few seconds; the
# nonce build argument makes every build run it (no layer cache hit, no whole-build reuse).
DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
ARG NONCE=0
RUN i=0; while [ $i -lt 3000 ]; do echo "load line $i of build $NONCE"; i=$((i+1)); done; sleep 2
"""


@dataclass
class Loaded:
    live: LiveServer
    service: str
    tokens: list[str]
    database: Path


def _repository(root: Path) -> str:
    work, bare = root / "work", root / "load.git"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True, env=GIT_ENV)
    (work / "Dockerfile").write_text(DOCKERFILE)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "commit", "-qm", "load"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True, env=GIT_ENV)
    return f"file://{bare}"


def stored_token(data: Path) -> str:
    """An API token in the database (``shipyard tokens create``): requests with it look the
    token up, unlike the admin token's."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "shipyard"), "tokens", "create", "--name", "load"],
        env={**os.environ, "SHIPYARD_DATA_DIR": str(data)},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return str(json.loads(out.stdout)["token"])


def build_statuses(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT status, count(*) FROM builds GROUP BY status").fetchall()
    return {str(status): int(n) for status, n in rows}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    root = tmp_path_factory.mktemp("load")
    data = root / "data"
    store = seed_base_image(data)
    repo = _repository(root / "repo")
    # A lease of 15 s: a heartbeat starved for that long ends its build CRASHED.
    proc, live = start_server(data, SHIPYARD_MAX_CONCURRENT_BUILDS="2", SHIPYARD_LEASE_S="15")
    try:
        service = create_service(live, repo, name="load")
        # One build first: the project's sandbox (user, disk, base image import) is ready
        # before the load, so builds during it take seconds.
        warm = start_build(live, service)
        assert live.wait(f"{service}/build/{warm}", timeout=300)["status"] == "SUCCESS"
        tokens = [stored_token(data), live.token]
        yield Loaded(live, service, tokens, data / "shipyard.db")
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data)


@pytest.mark.parametrize("clients", [16, 32, 64])
def test_sqlite_holds_concurrent_clients_while_builds_run(loaded: Loaded, clients: int) -> None:
    before = build_statuses(loaded.database)
    result = run_mix(
        loaded.live.url,
        loaded.tokens,
        loaded.service,
        clients=clients,
        seconds=SECONDS,
        start_body=lambda i: {
            "branch": "main",
            "overrides": {"buildArguments": {"NONCE": f"{clients}-{i}"}},
        },
        seed=clients,
    )
    summary = result.summary()
    print(f"\n{clients} clients x {SECONDS:g} s: {json.dumps(summary)}")
    # Builds ran during the load: one more has succeeded by now or does soon.
    deadline = time.monotonic() + 90
    while (statuses := build_statuses(loaded.database)).get("SUCCESS", 0) <= before.get(
        "SUCCESS", 0
    ) and time.monotonic() < deadline:
        time.sleep(1)
    print(f"builds: {statuses}")
    assert result.server_errors == 0, summary
    assert result.requests > clients, summary
    assert result.started, summary
    assert set(statuses) <= RUNNING | {"SUCCESS"}, statuses
    # Builds ran to the end: the executor was not starved either.
    assert statuses.get("SUCCESS", 0) > before.get("SUCCESS", 0), statuses
    log = loaded.live.log_path.read_text(errors="replace")
    assert "QueuePool limit" not in log
    assert "database is locked" not in log
