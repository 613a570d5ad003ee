"""8. SQLite under load (issue 11): ``shipyard up`` on its embedded default (SQLite, two
build slots) with real builds running — each RUN step logs 3 000 lines — while 16, 32 and 64
concurrent clients start builds, list them, get one and read its log for 60 s each
(``bench/mixload.py``: 1 start : 6 lists : 7 gets : 6 log reads; half the clients use a
stored API token, looked up in the database, half the admin token).

Figures per level: p50 / p99 latency of every answered request (ms), 5xx answers plus
requests without an answer (target 0), builds that ended ``CRASHED`` or ``FAILURE`` (target 0:
a starved heartbeat or log writer), and builds that succeeded during the level (builds ran).
The load generator (httpx, asyncio) shares the 2 cores with the server and its builds, so the
latencies are upper bounds; one run per level (60 s each)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BASE_IMAGE,
    BIN,
    Options,
    base_images_store,
    figure,
    git,
    log,
    machine_info,
    seed_base_image,
    start_server,
    workspace,
    write_result,
)
from bench.mixload import run_mix

LEVELS = (16, 32, 64)
DOCKERFILE = f"""\
FROM {BASE_IMAGE}
ARG NONCE=0
RUN i=0; while [ $i -lt 3000 ]; do echo "load line $i of build $NONCE"; i=$((i+1)); done; sleep 2
"""


def _repo(root: Path) -> str:
    work, bare = root / "work", root / "load.git"
    work.mkdir(parents=True)
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "init", "-q", "-b", "main")
    (work / "Dockerfile").write_text(DOCKERFILE)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "load")
    git(work, "push", "-q", str(bare), "main")
    return f"file://{bare}"


def _stored_token(data: Path) -> str:
    out = subprocess.run(
        [str(BIN / "shipyard"), "tokens", "create", "--name", "bench-load"],
        env={"SHIPYARD_DATA_DIR": str(data), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


def _start_body(clients: int) -> Callable[[int], dict[str, Any]]:
    """A distinct build argument per start: every build runs its RUN step (no cache hit)."""

    def body(i: int) -> dict[str, Any]:
        return {"branch": "main", "overrides": {"buildArguments": {"NONCE": f"{clients}-{i}"}}}

    return body


def _statuses(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT status, count(*) FROM builds GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


def main(opts: Options) -> dict[str, Any]:
    started = time.time()
    seconds = 10.0 if opts.quick else 60.0
    levels: dict[str, Any] = {}
    with workspace("load") as root:
        repo = _repo(root / "repo")
        data = root / "data"
        seed_base_image(base_images_store(data), root / "seed")
        server = start_server(data, SHIPYARD_MAX_CONCURRENT_BUILDS="2", SHIPYARD_LEASE_S="15")
        try:
            with server.client() as c:
                c.post("/v1/projects", json={"name": "p"}).raise_for_status()
                c.post(
                    "/v1/projects/p/services/build",
                    json={"name": "s", "vcsData": {"projectUrl": repo}},
                ).raise_for_status()
            tokens = [_stored_token(data), server.token]
            database = data / "shipyard.db"
            for clients in LEVELS:
                before = _statuses(database)
                result = run_mix(
                    server.url, tokens, "/v1/projects/p/services/s",
                    clients=clients, seconds=seconds, seed=clients,
                    start_body=_start_body(clients),
                )  # fmt: skip
                time.sleep(3)  # outcomes of the builds that ran meanwhile
                after = _statuses(database)
                summary = result.summary()
                summary["builds"] = after
                summary["succeeded_during"] = after.get("SUCCESS", 0) - before.get("SUCCESS", 0)
                summary["crashed_or_failed"] = after.get("CRASHED", 0) + after.get("FAILURE", 0)
                levels[str(clients)] = summary
                log(
                    f"{clients} clients: {summary['rps']} req/s, p50 {summary['p50_ms']} ms, "
                    f"p99 {summary['p99_ms']} ms, 5xx/no answer {summary['server_errors']}, "
                    f"builds {after}"
                )
        finally:
            server.stop()
    figures = []
    for clients in LEVELS:
        s = levels[str(clients)]
        figures += [
            figure(f"p99_c{clients}", f"{clients} clients, builds running: p99 latency",
                   [s["p99_ms"]], unit="ms",
                   context=f"p50 {s['p50_ms']} ms, {s['rps']} req/s, {s['requests']} requests"),
            figure(f"errors_c{clients}", f"{clients} clients: 5xx answers and no answers",
                   [s["server_errors"]], unit="requests", target=("<=", 0)),
            figure(f"crashed_c{clients}", f"{clients} clients: builds CRASHED or FAILURE",
                   [s["crashed_or_failed"]], unit="builds", target=("<=", 0),
                   context=f"{s['succeeded_during']} builds succeeded during the {seconds:g} s"),
        ]  # fmt: skip
    report: dict[str, Any] = {
        "name": "load",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "params": {"levels": LEVELS, "seconds": seconds, "build_slots": 2},
        "levels": levels,
        "figures": figures,
    }
    write_result("load", opts, report)
    return report
