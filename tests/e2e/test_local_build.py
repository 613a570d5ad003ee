"""``shipyard build ./app --follow`` against a live server, as a user runs it: the directory
goes up as a tar honouring .dockerignore, builds, and the upload is gone afterwards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from shipyard.uploads.store import uploads_dir
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
MTIME = 1_650_000_000  # 2022-04-15T05:20:00Z

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
COPY . /ctx
RUN test ! -e /ctx/secret.txt && test ! -e /ctx/node_modules && cat /ctx/hello.txt
"""


@pytest.fixture(scope="module")
def service(live: LiveServer) -> tuple[str, str]:
    with live.client() as c:
        project = c.post("/v1/projects", json={"name": "local"}).json()["data"]["id"]
        body = {"name": "app", "vcsData": {"projectUrl": "file:///nowhere",
                "projectType": "self-hosted", "projectBranch": "main"}}  # fmt: skip
        r = c.post(f"/v1/projects/{project}/services/combined", json=body)
        assert r.status_code == 200, r.text
        return project, r.json()["data"]["id"]


def make_app(root: Path) -> Path:
    files = {
        "Dockerfile": DOCKERFILE,
        ".dockerignore": "secret.txt\nnode_modules\n",
        "hello.txt": "hello from a local directory\n",
        "secret.txt": "not for the image\n",
        "node_modules/dep/index.js": "x\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (MTIME, MTIME))
    return root


def test_shipyard_build_of_a_directory_follows_to_success(
    live: LiveServer, service: tuple[str, str], tmp_path: Path
) -> None:
    project, svc = service
    app = make_app(tmp_path / "app")
    env = {**os.environ, "SHIPYARD_URL": live.url, "SHIPYARD_TOKEN": live.token, "COLUMNS": "200"}
    done = subprocess.run(
        [SHIPYARD, "build", str(app), "-p", project, "-s", svc, "--follow"],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "uploaded " in done.stderr and "upload-" in done.stderr
    assert "hello from a local directory" in done.stdout
    assert "SUCCESS" in done.stderr and f"{live.registry}/{project}/{svc}@sha256:" in done.stderr
    # Stored only for that build.
    assert list(uploads_dir(live.data_dir).glob("*.tar")) == []
    with live.client() as c:
        builds = c.get(f"/v1/projects/{project}/services/{svc}/build").json()["data"]["builds"]
    uri = builds[0]["registry"]["uri"]
    assert builds[0]["uploadId"].startswith("upload-")
    config = json.loads(subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{uri}"], capture_output=True, text=True, check=True, timeout=60,
    ).stdout)  # fmt: skip
    labels = config["config"]["Labels"]
    # No commit: created is the newest file time in the upload; no public source to name.
    assert labels["org.opencontainers.image.created"] == "2022-04-15T05:20:00Z"
    assert "org.opencontainers.image.source" not in labels
    with live.client() as c:
        r = c.get(f"/v1/projects/{project}/services/{svc}/build/{builds[0]['id']}/provenance")
    assert r.status_code == 200, r.text
    source = r.json()["predicate"]["buildDefinition"]["resolvedDependencies"][0]
    assert source["uri"] == f"shipyard:upload:{builds[0]['uploadId']}"
    assert len(source["digest"]["sha256"]) == 64


def test_an_upload_escaping_by_a_link_fails_the_build(
    live: LiveServer, service: tuple[str, str]
) -> None:
    project, svc = service
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        dockerfile = f"FROM {BUSYBOX_IMAGE}\nCOPY . /ctx\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
        tar.addfile(link)
    with live.client() as c:
        r = c.post(f"/v1/projects/{project}/uploads", content=out.getvalue())
        assert r.status_code == 200, r.text
        r = c.post(f"/v1/projects/{project}/services/{svc}/build",
                   json={"uploadId": r.json()["data"]["id"]})  # fmt: skip
        assert r.status_code == 200, r.text
        build_id = r.json()["data"]["id"]
    done = live.wait(f"/v1/projects/{project}/services/{svc}/build/{build_id}")
    assert done["status"] == "FAILURE" and "pointing outside" in done["message"]
    assert list(uploads_dir(live.data_dir).glob("*.tar")) == []
