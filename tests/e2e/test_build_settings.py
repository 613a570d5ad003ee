"""Stored build settings are used: buildConfiguration.dockerfileTarget (an override wins),
includeGitFolder (no .git in the context by default), fullGitClone."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE} AS plain
COPY . /ctx
RUN if [ -e /ctx/.git ]; then echo "GIT-IN-CONTEXT"; else echo "NO-GIT"; fi
RUN if [ -f /ctx/.git/shallow ]; then echo "SHALLOW"; else echo "FULL-HISTORY"; fi

FROM plain AS chosen
RUN echo "STAGE-CHOSEN"

FROM plain AS last
RUN echo "STAGE-LAST"
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("settings") / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text(DOCKERFILE)
    for i in range(3):
        (repo / "n.txt").write_text(f"{i}\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", f"c{i}"]):
            if args[0] == "init" and i:
                continue
            subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    return repo


def build(live: LiveServer, name: str, repo: Path, config: dict[str, Any],
          body: dict[str, Any] | None = None) -> list[str]:  # fmt: skip
    project = f"settings-{name}"
    with live.client() as c:
        c.post("/v1/projects", json={"name": project})
        c.post(f"/v1/projects/{project}/services/combined", json={
            "name": "s", "vcsData": {"projectUrl": f"file://{repo}", "projectBranch": "main"},
            "buildConfiguration": config,
        })  # fmt: skip
        svc = f"/v1/projects/{project}/services/s"
        build_id = c.post(f"{svc}/build", json=body or {}).json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}")
    logs = live.logs(f"{svc}/build-logs", build_id)
    assert done["status"] == "SUCCESS", logs[-15:]
    return logs


def test_defaults_no_git_folder_and_the_last_stage(live: LiveServer, repo: Path) -> None:
    logs = build(live, "defaults", repo, {})
    assert "NO-GIT" in logs and "GIT-IN-CONTEXT" not in logs
    assert "STAGE-LAST" in logs


def test_stored_target_git_folder_and_full_clone(live: LiveServer, repo: Path) -> None:
    logs = build(live, "stored", repo, {"dockerfileTarget": "chosen", "includeGitFolder": True,
                                        "fullGitClone": True})  # fmt: skip
    assert "STAGE-CHOSEN" in logs and "STAGE-LAST" not in logs
    assert "GIT-IN-CONTEXT" in logs and "FULL-HISTORY" in logs


def test_the_override_target_wins(live: LiveServer, repo: Path) -> None:
    logs = build(live, "override", repo, {"dockerfileTarget": "chosen", "includeGitFolder": True},
                 {"overrides": {"docker": {"dockerfileTarget": "last"}}})  # fmt: skip
    assert "STAGE-LAST" in logs and "STAGE-CHOSEN" not in logs
    assert "SHALLOW" in logs


def test_deleting_a_project_releases_its_sandbox(live: LiveServer, repo: Path) -> None:
    import pwd
    import time

    from shipyard.sandbox.users import user_name
    from tests.helpers.live import instance_id, sandbox_dir

    build(live, "doomed", repo, {})
    name = user_name(instance_id(live.data_dir), "settings-doomed")
    assert (sandbox_dir(live.data_dir) / name).is_dir()
    with live.client() as c:
        r = c.delete("/v1/projects/settings-doomed", params={"delete_child_objects": "true"})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while True:
        try:
            pwd.getpwnam(name)
        except KeyError:
            break
        assert time.monotonic() < deadline, "the build user was not removed"
        time.sleep(0.2)
    assert not (sandbox_dir(live.data_dir) / name).exists()
    assert not (sandbox_dir(live.data_dir) / "disks" / f"{name}.img").exists()
