"""Through a live server (local executor, 2 slots, real buildah): a project that queued four
builds does not hold back another project's one build, a service builds one commit at a
time, and queued builds say in their log why they wait."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.pipeline.builder import unmount_under
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import (
    BIN,
    LiveServer,
    remove_sandbox,
    seed_base_image,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip
# N makes each build distinct (no whole-build reuse, no cached RUN).
DOCKERFILE = f"FROM {BUSYBOX_IMAGE}\nARG N=0\nRUN sleep 6 && echo slow-$N\n"
TRIVIAL = f"FROM {BUSYBOX_IMAGE}\nARG N=0\nRUN echo trivial-$N\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = tmp_path_factory.mktemp("fair") / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text(DOCKERFILE)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "slow"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    return f"file://{Path(repo)}"


def service(live: LiveServer, project: str, name: str, url: str) -> str:
    with live.client() as c:
        if c.get(f"/v1/projects/{project}").status_code == 404:
            assert c.post("/v1/projects", json={"name": project}).status_code == 200
        body = {"name": name, "vcsData": {"projectUrl": url, "projectBranch": "main"}}
        r = c.post(f"/v1/projects/{project}/services/build", json=body)
        assert r.status_code == 200, r.text
    return f"/v1/projects/{project}/services/{name}"


def start(live: LiveServer, svc: str, n: str, dockerfile: str | None = None) -> str:
    overrides: dict[str, Any] = {"buildArguments": {"N": n}}
    if dockerfile:
        overrides["docker"] = {"dockerfileContents": dockerfile}
    with live.client() as c:
        r = c.post(f"{svc}/build", json={"branch": "main", "overrides": overrides})
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["id"])


def wait_building(live: LiveServer, svc: str, build_id: str) -> None:
    deadline = time.monotonic() + 120
    while "==> building" not in live.logs(f"{svc}/build-logs", build_id):
        assert time.monotonic() < deadline, f"{build_id} never reached BUILDING"
        time.sleep(0.1)


def test_projects_interleave_and_services_build_one_at_a_time(live: LiveServer, repo: str) -> None:
    one, two = service(live, "alpha", "one", repo), service(live, "alpha", "two", repo)
    web = service(live, "beta", "web", repo)
    a1, a2, a3, a4 = (start(live, svc, f"a{i}") for i, svc in enumerate((one, two, one, two)))
    wait_building(live, one, a1)
    wait_building(live, two, a2)
    b1 = start(live, web, "b1", TRIVIAL)  # queued behind four builds of alpha

    svc_of = {a1: one, a2: two, a3: one, a4: two, b1: web}
    done = {b: live.wait(f"{svc_of[b]}/build/{b}", timeout=300) for b in svc_of}
    logs = {b: live.logs(f"{svc_of[b]}/build-logs", b) for b in svc_of}
    for build_id, data in done.items():
        assert data["status"] == "SUCCESS", logs[build_id][-15:]
    started = {b: data["startedAt"] for b, data in done.items()}
    concluded = {b: data["concludedAt"] for b, data in done.items()}

    # beta's build went next when a slot freed, before alpha's queue drained.
    assert started[b1] < started[a3] and started[b1] < started[a4], started
    # One build per service at a time: each waited for the one before it.
    assert started[a3] >= concluded[a1] and started[a4] >= concluded[a2], (started, concluded)
    # Why each waited, in the form `shipyard … --follow` shows (shipyard/cli/follow.py).
    assert "Queued: position 1 of 3; waiting for a free build slot (2 of 2 running)" in logs[b1]
    waited = [line for line in logs[a3] if line.startswith("Queued: ")]
    assert any(
        re.fullmatch(rf"Queued: position \d of \d; service one is already building {a1}", line)
        for line in waited
    ), waited
    began = logs[a3].index(next(x for x in logs[a3] if x.startswith(f"Build {a3} (attempt 1)")))
    assert all(logs[a3].index(line) < began for line in waited)
    # A build that found a free slot never said it waited.
    assert not any(line.startswith("Queued: ") for line in logs[a1] + logs[a2])
    # One notice per reason: never the same line twice in a row.
    for build_id in svc_of:
        queued = [line.split("; ", 1)[1] for line in logs[build_id] if line.startswith("Queued")]
        assert all(x != y for x, y in itertools.pairwise(queued)), queued

    # What the run left in the metrics and the worker list (the API runs the local executor).
    with live.client() as c:
        text = c.get("/metrics").text
        (worker,) = c.get("/v1/workers").json()["data"]["workers"]
    assert 'shipyard_build_duration_seconds_count{outcome="SUCCESS"} 5.0' in text
    assert 'shipyard_build_queue_wait_seconds_count{outcome="SUCCESS"} 5.0' in text
    for stage in ("starting", "cloning", "building", "uploading"):
        assert f'shipyard_build_stage_duration_seconds_count{{stage="{stage}"}} 5.0' in text
    assert (
        f'shipyard_worker_up{{hostname="{worker["hostname"]}",worker="{worker["id"]}"}} 1.0' in text
    )
    assert worker["alive"] is True and worker["builds"] == [] and worker["concurrency"] == 2
    shown = subprocess.run(
        [str(BIN / "shipyard"), "workers"],
        env={**os.environ, "SHIPYARD_URL": live.url, "SHIPYARD_TOKEN": live.token, "COLUMNS": "250"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert worker["id"] in shown.stdout and "alive" in shown.stdout, shown.stdout


def test_project_limit(tmp_path: Path, repo: str) -> None:
    """SHIPYARD_PROJECT_MAX_RUNNING=1: a project's second build waits although a slot is
    free, while another project's build takes that slot."""
    data = tmp_path / "data"
    store = seed_base_image(data)
    proc, live = start_server(data, SHIPYARD_PROJECT_MAX_RUNNING="1")
    try:
        one, two = service(live, "alpha", "one", repo), service(live, "alpha", "two", repo)
        web = service(live, "beta", "web", repo)
        a1 = start(live, one, "p1")
        wait_building(live, one, a1)
        a2 = start(live, two, "p2")
        b1 = start(live, web, "pb", TRIVIAL)
        svc_of = {a1: one, a2: two, b1: web}
        done = {b: live.wait(f"{svc_of[b]}/build/{b}", timeout=300) for b in svc_of}
        logs = {b: live.logs(f"{svc_of[b]}/build-logs", b) for b in svc_of}
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data)
    assert all(d["status"] == "SUCCESS" for d in done.values()), logs
    assert done[b1]["startedAt"] < done[a2]["startedAt"]
    assert done[a2]["startedAt"] >= done[a1]["concludedAt"]
    limit = r"Queued: position \d of \d; project limit: 1 of 1 builds of project alpha running"
    assert any(re.fullmatch(limit, line) for line in logs[a2]), logs[a2][:5]
    assert not any(line.startswith("Queued: ") for line in logs[b1])
