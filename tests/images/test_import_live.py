"""``shipyard images import`` of an OCI dir, an OCI archive, a docker archive (made locally
from busybox) and ``--from`` a registry, then a build ``FROM`` each of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.pipeline.builder import BuildahStore
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def shipyard(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(live.data_dir),
        "SHIPYARD_REGISTRY_PORT": live.registry.rsplit(":", 1)[1],
        "COLUMNS": "200",
    }
    return subprocess.run(
        [SHIPYARD, *args], env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def buildah_push(live: LiveServer, destination: str, *extra: str) -> None:
    store = BuildahStore(
        root=live.data_dir / "base-images" / "root",
        runroot=live.data_dir / "base-images" / "runroot",
    )
    subprocess.run(
        ["buildah", *store.args(), "push", *extra, BUSYBOX_IMAGE, destination],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def test_import_then_build_from_it(live: LiveServer, sample_app: SampleApp, tmp_path: Path) -> None:
    # What an operator brings to a host without a public registry: busybox, saved three ways.
    layout, oci_archive, docker_archive = (
        tmp_path / "busybox-oci",
        tmp_path / "busybox.oci.tar",
        tmp_path / "busybox.docker.tar",
    )
    buildah_push(live, f"oci:{layout}")
    buildah_push(live, f"oci-archive:{oci_archive}")
    buildah_push(live, f"docker-archive:{docker_archive}:busybox:saved")
    shared = f"{live.registry}/shared/busybox:remote"
    buildah_push(live, f"docker://{shared}", "--tls-verify=false", "--authfile", str(live.authfile))

    imports = {
        "localhost/shared/from-dir:1": [str(layout), "--name", "shared/from-dir:1"],
        "localhost/shared/from-oci-archive:1": [str(oci_archive), "--name", "shared/from-oci-archive:1"],
        "localhost/shared/from-docker-archive:1": [str(docker_archive), "--name", "shared/from-docker-archive:1"],
        "localhost/shared/from-registry:1": ["--from", shared, "--creds", f"admin:{live.token}",
                                             "--no-tls-verify", "--name", "shared/from-registry:1"],
        # The other route: into the embedded registry, under shared/ (Shipyard's own credential).
        f"{live.registry}/shared/pushed:1": [str(layout), "--registry", "--name", "shared/pushed:1"],
    }  # fmt: skip
    for name, args in imports.items():
        done = shipyard(live, "images", "import", *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout.strip() == name and f"FROM {name}" in done.stderr
        assert live.token not in done.stdout + done.stderr
    listed = json.loads(shipyard(live, "images", "list", "-o", "json").stdout)
    names = {n for image in listed for n in image["names"]}
    assert {n for n in imports if n.startswith("localhost/")} <= names

    refused = shipyard(live, "images", "import", str(tmp_path), "--name", "x:1")
    assert refused.returncode == 1 and "oci-layout" in refused.stderr
    outside = shipyard(live, "images", "import", str(layout), "--registry", "--name", "mine/x:1")
    assert outside.returncode == 1 and "shared prefix" in outside.stderr

    stages = "".join(f"FROM {name} AS s{n}\n" for n, name in enumerate(imports))
    copies = "".join(f"COPY --from=s{n} /bin/busybox /proof/{n}\n" for n in range(len(imports)))
    dockerfile = f"{stages}FROM {next(iter(imports))}\n{copies}RUN echo imported > /proof/ok\n"
    with live.client() as c:
        assert c.post("/v1/projects", json={"name": "imports"}).status_code == 200
        body = {"name": "s", "vcsData": {"projectUrl": sample_app.url, "projectBranch": "main"}}
        assert c.post("/v1/projects/imports/services/combined", json=body).status_code == 200
        started = c.post(
            "/v1/projects/imports/services/s/build",
            json={"overrides": {"docker": {"dockerfileContents": dockerfile}}},
        )
        assert started.status_code == 200, started.text
        build_id = started.json()["data"]["id"]
    build = live.wait(f"/v1/projects/imports/services/s/build/{build_id}")
    assert build["status"] == "SUCCESS", live.logs(
        "/v1/projects/imports/services/s/build-logs", build_id
    )[-15:]


def test_private_base_pulled_with_the_projects_credentials(
    live: LiveServer, sample_app: SampleApp
) -> None:
    # A registry the build's own credential does not open: the embedded one under another
    # name (auth files key credentials by host), in a repository no project owns.
    port = live.registry.rsplit(":", 1)[1]
    private = f"localhost:{port}/private/base:1"
    buildah_push(live, f"docker://{live.registry}/private/base:1", "--tls-verify=false",
                 "--authfile", str(live.authfile))  # fmt: skip
    dockerfile = f"FROM {private}\nRUN echo private-ok > /proof\n"
    build_path = "/v1/projects/privbase/services/s/build"
    with live.client() as c:
        assert c.post("/v1/projects", json={"name": "privbase"}).status_code == 200
        body = {"name": "s", "vcsData": {"projectUrl": sample_app.url, "projectBranch": "main"}}
        assert c.post("/v1/projects/privbase/services/combined", json=body).status_code == 200

        def build() -> dict[str, object]:
            started = c.post(
                build_path, json={"overrides": {"docker": {"dockerfileContents": dockerfile}}}
            )
            assert started.status_code == 200, started.text
            return live.wait(f"{build_path}/{started.json()['data']['id']}")

        denied = build()
        assert denied["status"] == "FAILURE" and private in str(denied["message"])
        creds = {"registries": {f"localhost:{port}": {"username": "admin", "password": live.token}}}
        stored = c.put("/v1/projects/privbase/registry-pull-credentials", json=creds)
        assert stored.status_code == 200 and live.token not in stored.text
        pulled = build()
        logs = live.logs("/v1/projects/privbase/services/s/build-logs", str(pulled["id"]))
        assert pulled["status"] == "SUCCESS", logs[-15:]
        assert not any(live.token in line for line in logs)
