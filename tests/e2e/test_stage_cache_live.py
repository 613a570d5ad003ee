"""The stage cache (``shipyard.pipeline.stage_cache``) through the API on a live server: an
unchanged earlier stage is taken whole; a changed input of the stage (a copied file, an
ignore file, a build argument) or ``useCache: false`` takes nothing, so nothing stale is
served. That a taken stage gives the very image buildah's own cache gives is
tests/pipeline/test_stage_cache_build.py."""

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
FROM {BUSYBOX_IMAGE} AS deps
ARG FLAVOUR=plain
WORKDIR /src
COPY deps/ /src/deps/
RUN cat /src/deps/* > /deps.out && echo "$FLAVOUR" >> /deps.out && date +%s%N > /made

FROM {BUSYBOX_IMAGE}
COPY --from=deps /deps.out /made /out/
COPY late.txt /late.txt
RUN cat /out/deps.out /late.txt > /all.txt
"""
HIT = "Stage cache: stage deps is unchanged"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True,
                          text=True)  # fmt: skip
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def service(live: LiveServer, project: str, repo: Path) -> str:
    with live.client() as c:
        c.post("/v1/projects", json={"name": project})
        c.post(f"/v1/projects/{project}/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}})  # fmt: skip
    return f"/v1/projects/{project}/services/s"


def build(live: LiveServer, svc: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    with live.client() as c:
        response = c.post(f"{svc}/build", json=body)
        assert response.status_code < 300, response.text
        build_id = response.json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}")
    logs = live.logs(f"{svc}/build-logs", build_id)
    assert done["status"] == "SUCCESS", "\n".join(logs[-25:])
    return done, logs


def read(live: LiveServer, ref: str, path: str) -> str:
    """A file of the pushed image, read from its layers."""
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{ref}"], check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0
    tmp = Path(live.data_dir) / f"read-{abs(hash((ref, path)))}"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--src-authfile", str(live.authfile),
         f"docker://{ref}", f"dir:{tmp}"], check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    import json
    import tarfile

    manifest = json.loads((tmp / "manifest.json").read_text())
    found = None
    for layer in manifest["layers"]:
        blob = tmp / layer["digest"].split(":", 1)[1]
        with tarfile.open(blob) as tar:
            try:
                member = tar.extractfile(path.lstrip("/"))
            except KeyError:
                continue
            if member is not None:
                found = member.read().decode()
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    assert found is not None, f"{path} not in {ref}"
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"Dockerfile": DOCKERFILE, "deps/a.txt": "dep a\n", "late.txt": "late 1\n"},
           "first")  # fmt: skip
    return repo


def test_an_unchanged_stage_is_taken_whole(live: LiveServer, repo: Path) -> None:
    svc = service(live, "stage-warm", repo)
    first, logs = build(live, svc, {"branch": "main"})
    assert not any(HIT in line for line in logs)
    made = read(live, first["registry"]["uri"], "/out/made")

    late = commit(repo, {"late.txt": "late 2\n"}, "late change")
    warm, logs = build(live, svc, {"branch": "main", "sha": late})
    assert any(HIT in line for line in logs), "\n".join(logs)
    # The stage's steps were not run or re-checked: no step of it is in the log.
    assert not any("COPY deps/" in line for line in logs), logs
    assert read(live, warm["registry"]["uri"], "/all.txt") == "dep a\nplain\nlate 2\n"

    # Nothing of the stage ran again: the file its RUN stamped with the time is the first one.
    assert read(live, warm["registry"]["uri"], "/out/made") == made


def test_a_changed_input_of_the_stage_takes_nothing(live: LiveServer, repo: Path) -> None:
    svc = service(live, "stage-inputs", repo)
    build(live, svc, {"branch": "main"})

    # A file the stage copies.
    sha = commit(repo, {"deps/a.txt": "dep A2\n"}, "deps change")
    done, logs = build(live, svc, {"branch": "main", "sha": sha})
    assert not any(HIT in line for line in logs)
    assert read(live, done["registry"]["uri"], "/all.txt") == "dep A2\nplain\nlate 1\n"

    # A build argument the stage declares.
    body = {"branch": "main", "sha": sha, "overrides": {"buildArguments": {"FLAVOUR": "spicy"}}}
    done, logs = build(live, svc, body)
    assert not any(HIT in line for line in logs)
    assert read(live, done["registry"]["uri"], "/all.txt") == "dep A2\nspicy\nlate 1\n"

    # An ignore file that now leaves a copied file out.
    sha = commit(repo, {"deps/b.txt": "dep b\n"}, "another dep")
    build(live, svc, {"branch": "main", "sha": sha})
    sha = commit(repo, {".dockerignore": "deps/b.txt\n"}, "ignore b")
    done, logs = build(live, svc, {"branch": "main", "sha": sha})
    assert not any(HIT in line for line in logs)
    assert read(live, done["registry"]["uri"], "/all.txt") == "dep A2\nplain\nlate 1\n"

    # A service of the same project (the same store) with useCache false: every step built.
    sha = commit(repo, {"late.txt": "late 3\n"}, "late again")
    with live.client() as c:
        c.post("/v1/projects/stage-inputs/services/build", json={
            "name": "nocache", "vcsData": {"projectUrl": f"file://{repo}"},
            "buildSettings": {"dockerfile": {"buildkit": {"useCache": False}}},
        })  # fmt: skip
    done, logs = build(
        live, "/v1/projects/stage-inputs/services/nocache", {"branch": "main", "sha": sha}
    )
    assert not any(HIT in line for line in logs)
    assert any("COPY deps/" in line for line in logs)

    # And with nothing changed but the late file, the stage is taken again.
    sha = commit(repo, {"late.txt": "late 4\n"}, "late once more")
    done, logs = build(live, svc, {"branch": "main", "sha": sha})
    assert any(HIT in line for line in logs), "\n".join(logs)
    assert read(live, done["registry"]["uri"], "/all.txt") == "dep A2\nplain\nlate 4\n"
