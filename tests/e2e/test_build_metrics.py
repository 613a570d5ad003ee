"""GET …/build-metrics reports what the build's cgroups measured (CPU, memory) and its
duration, for a real build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip


def test_a_builds_cpu_and_memory_are_measured(live: LiveServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nRUN i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 3\n"
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    with live.client() as c:
        c.post("/v1/projects", json={"name": "metrics"})
        c.post("/v1/projects/metrics/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}})  # fmt: skip
        svc = "/v1/projects/metrics/services/s"
        build_id = c.post(f"{svc}/build", json={"branch": "main"}).json()["data"]["id"]
        assert live.wait(f"{svc}/build/{build_id}")["status"] == "SUCCESS"
        data = c.get(f"{svc}/build-metrics", params={"buildId": build_id}).json()["data"]
    memory = [p["value"] for v in data["memory"]["values"] for p in v["data"]]
    cpu = [p["value"] for v in data["cpu"]["values"] for p in v["data"]]
    assert memory and max(memory) > 0, data["memory"]
    assert cpu and max(cpu) > 0, data["cpu"]
    assert data["buildDuration"]["values"], data["buildDuration"]
