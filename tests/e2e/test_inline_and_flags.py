"""Through a live server: an inline Dockerfile (overrides.docker.dockerfileContents) is built
from the checkout's context, and stored commit ignore flags pick the newest unflagged commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("inline") / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nRUN echo FROM-THE-CHECKOUT\n")
    shas = []
    messages = ["first", "second: build me", "wip\n\ndo not build [skip ci]"]
    for i, message in enumerate(messages):
        (repo / "app" / "n.txt").write_text(f"N-IS-{i}\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", message]):
            if args[0] == "init" and i:
                continue
            subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=ENV, check=True,
                             capture_output=True, text=True)  # fmt: skip
        shas.append(rev.stdout.strip())
    return repo, shas


def test_inline_dockerfile_and_ci_flags(live: LiveServer, repo: tuple[Path, list[str]]) -> None:
    path, shas = repo
    inline = f"FROM {BUSYBOX_IMAGE}\nCOPY n.txt /n.txt\nRUN echo INLINE-BUILT && cat /n.txt\n"
    with live.client() as c:
        c.post("/v1/projects", json={"name": "inline"})
        r = c.post("/v1/projects/inline/services/build", json={
            "name": "s", "vcsData": {"projectUrl": f"file://{path}", "projectBranch": "main"},
            "buildSettings": {"dockerfile": {"dockerFilePath": "/Dockerfile",
                                             "dockerWorkDir": "/app"}},
            "buildConfiguration": {"ciIgnoreFlagsEnabled": True},
        })  # fmt: skip
        assert r.status_code == 200, r.text
        svc = "/v1/projects/inline/services/s"
        body = {"branch": "main", "overrides": {"docker": {"dockerfileContents": inline}}}
        build_id = c.post(f"{svc}/build", json=body).json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}")
    logs = live.logs(f"{svc}/build-logs", build_id)
    assert done["status"] == "SUCCESS", logs[-15:]
    # The tip says [skip ci]: the commit before it is built, from dockerWorkDir /app.
    assert done["sha"] == shas[1], logs[-15:]
    assert "INLINE-BUILT" in logs and "N-IS-1" in logs
    assert "FROM-THE-CHECKOUT" not in logs
