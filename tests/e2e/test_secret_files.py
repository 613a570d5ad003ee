"""Secret files end to end (issue 10, item 1): the seed's example buildFiles and
dockerSecretMounts, given at create time and as overrides, reach the build as the decoded,
templated text; GET build-arguments returns what was sent; nothing is echoed or kept in clear;
a build file that would overwrite a repository file fails the build."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_builds import image_files
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer
from tests.helpers.sample_app import _git

pytestmark = pytest.mark.slow

SEED_DATA = "VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU="
SEED = {"data": SEED_DATA, "encoding": "utf-8"}

# The RUN step copies what it sees in the mount into the image, so the test can read it.
DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
COPY dir/fileName /out/fileName
COPY conf/override.txt /out/override.txt
RUN --mount=type=secret,id=example-secret-mount_1 cat /run/secrets/example-secret-mount_1 > /out/mount
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("secret-files-repo")
    work, bare = root / "work", root / "repo.git"
    work.mkdir()
    _git(root, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    _git(work, "init", "-q", "--initial-branch=main")
    (work / "Dockerfile").write_text(DOCKERFILE)
    (work / "conf").mkdir()
    (work / "conf" / "tracked.txt").write_text("in the repository\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "initial")
    _git(work, "push", "-q", str(bare), "main")
    return f"file://{bare}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build(live: LiveServer, svc: str, body: dict[str, Any]) -> dict[str, Any]:
    with live.client() as c:
        r = c.post(f"{svc}/build", json=body)
        assert r.status_code == 200, r.text
    return live.wait(f"{svc}/build/{r.json()['data']['id']}")


def test_seed_example_is_decoded_templated_used_and_never_echoed(
    live: LiveServer, repo: str, tmp_path: Path
) -> None:
    with live.client() as c:
        p = c.post("/v1/projects", json={"name": "secret-files"}).json()["data"]["id"]
        created = c.post(f"/v1/projects/{p}/services/combined", json={
            "name": "web",
            "vcsData": {"projectUrl": repo, "projectType": "self-hosted", "projectBranch": "main"},
            "buildSettings": {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}},
            "buildArguments": {"NODE_ENV": "production"},
            "buildFiles": {"/dir/fileName": SEED},
            "dockerSecretMounts": {"example-secret-mount_1": SEED},
        })  # fmt: skip
        assert created.status_code == 200, created.text
        svc = f"/v1/projects/{p}/services/web"
        for text in (created.text, c.get(svc).text, c.get(f"/v1/projects/{p}/services").text):
            assert SEED_DATA not in text and "buildFiles" not in text
        got = c.get(f"{svc}/build-arguments").json()["data"]
        assert got["buildFiles"] == {"/dir/fileName": SEED}  # what was sent
        assert got["dockerSecretMounts"] == {"example-secret-mount_1": SEED}

    done = build(live, svc, {"overrides": {
        "buildFiles": {"/conf/override.txt": {"data": b64("env=${NODE_ENV} other=${NOT_AN_ARG}")}},
    }})  # fmt: skip
    assert done["status"] == "SUCCESS", (done, live.logs(f"{svc}/build-logs", done["id"])[-20:])
    files = image_files(live, done["registry"]["uri"], tmp_path / "oci")
    text = b"This is an example with a templated production variable"
    assert files["out/fileName"] == text  # create-time file, decoded and templated
    assert files["out/mount"] == text  # what the RUN step saw in the secret mount
    assert files["out/override.txt"] == b"env=production other=${NOT_AN_ARG}"

    # Overrides win per id, and their build arguments template the stored files too.
    done = build(live, svc, {"overrides": {
        "buildArguments": {"NODE_ENV": "staging"},
        "buildFiles": {"/conf/override.txt": {"data": b64("x")}},
        "dockerSecretMounts": {"example-secret-mount_1": {"data": b64("mount ${NODE_ENV}")}},
    }})  # fmt: skip
    assert done["status"] == "SUCCESS", done
    files = image_files(live, done["registry"]["uri"], tmp_path / "oci2")
    assert files["out/fileName"] == b"This is an example with a templated staging variable"
    assert files["out/mount"] == b"mount staging"

    db = b"".join(p.read_bytes() for p in live.data_dir.glob("shipyard.db*"))
    for secret in (SEED_DATA.encode(), text, b"example with a templated", b"mount ${NODE_ENV}"):
        assert secret not in db


def test_a_build_file_over_a_repository_file_fails_naming_it(live: LiveServer, repo: str) -> None:
    with live.client() as c:
        p = c.post("/v1/projects", json={"name": "collide"}).json()["data"]["id"]
        c.post(f"/v1/projects/{p}/services/combined", json={
            "name": "web", "vcsData": {"projectUrl": repo, "projectBranch": "main"},
        })  # fmt: skip
    done = build(live, f"/v1/projects/{p}/services/web", {
        "overrides": {"buildFiles": {"/conf/tracked.txt": SEED}},
    })  # fmt: skip
    assert done["status"] == "FAILURE", done
    assert "/conf/tracked.txt" in done["message"] and "overwrite" in done["message"], done
