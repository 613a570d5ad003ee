"""7. Restart after a crash (issue 11): ``shipyard up`` killed with SIGKILL while a build runs
a RUN step, then started again on the same data dir. Figures: seconds until the API answers
(target <= 5 s) and until the killed build is concluded (target <= 10 s), and the restart
against a first start on a fresh data dir measured in the same round (ratio)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BASE_IMAGE,
    GIT_ENV,
    Options,
    Server,
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

SLOW = f"FROM {BASE_IMAGE}\nRUN sleep 300\n"


def _repo(root: Path) -> str:
    work, bare = root / "work", root / "repo.git"
    work.mkdir(parents=True)
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "init", "-q", "-b", "main")
    (work / "Dockerfile").write_text(SLOW)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "slow")
    git(work, "push", "-q", str(bare), "main")
    return f"file://{bare}"


def _timed_start(data: Path) -> tuple[float, Server]:
    began = time.monotonic()
    server = start_server(data)
    return time.monotonic() - began, server


def _round(root: Path, repo: str) -> dict[str, float]:
    data = root / "data"
    seed_base_image(base_images_store(data), root / "seed")
    first, server = _timed_start(data)
    try:
        with server.client() as c:
            c.post("/v1/projects", json={"name": "p"}).raise_for_status()
            c.post(
                "/v1/projects/p/services/build",
                json={"name": "s", "vcsData": {"projectUrl": repo}},
            ).raise_for_status()
            build = c.post("/v1/projects/p/services/s/build", json={"branch": "main"}).json()
            build_id = build["data"]["id"]
            deadline = time.monotonic() + 120
            while not c.get(
                "/v1/projects/p/services/s/build-logs",
                params={"buildId": build_id, "textIncludes": "sleep 300"},
            ).json()["data"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the build never reached its RUN step")
                time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        killed = time.monotonic()
        restart, server = _timed_start(data)
        with server.client() as c:
            while not c.get(f"/v1/projects/p/services/s/build/{build_id}").json()["data"][
                "concluded"
            ]:
                if time.monotonic() - killed > 120:
                    raise RuntimeError("the killed build was never concluded")
                time.sleep(0.1)
        concluded = time.monotonic() - killed - restart
        return {"first_s": first, "restart_s": restart, "concluded_s": concluded}
    finally:
        server.stop()


def main(opts: Options) -> dict[str, Any]:
    started = time.time()
    rounds: list[dict[str, float]] = []
    for i in range(opts.runs(5, 2)):
        with workspace("restart") as root:
            repo = _repo(root / "repo")
            rounds.append(_round(root / "round", repo))
            log(f"restart round {i + 1}: {rounds[-1]}")
    result = {
        "name": "restart",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "git_env": sorted(GIT_ENV),
        "rounds": rounds,
        "figures": [
            figure("restart_s", "restart after kill -9 mid-build: API answers", 
                   [r["restart_s"] for r in rounds], target=("<=", 5.0), unit="s"),
            figure("concluded_s", "killed build concluded after the restart",
                   [r["concluded_s"] for r in rounds], target=("<=", 10.0), unit="s"),
            figure("restart_vs_first", "restart / first start on a fresh data dir",
                   [r["restart_s"] / r["first_s"] for r in rounds]),
        ],
    }  # fmt: skip
    write_result("restart", opts, result)
    return result
