"""End to end through the API of a live server: real git, real buildah, real registry."""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live import LiveServer, running_containers_under
from tests.helpers.sample_app import SECRET_VALUE, SampleApp

pytestmark = pytest.mark.slow


def skopeo_inspect(live: LiveServer, ref: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(live.authfile),
            *extra,
            f"docker://{ref}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def image_files(live: LiveServer, ref: str, dest: Path) -> dict[str, bytes]:
    """Every file of every layer of ``ref`` (path → content), and the raw blobs under dest."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--src-authfile",
            str(live.authfile),
            f"docker://{ref}",
            f"oci:{dest}:x",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    files: dict[str, bytes] = {}
    for blob in (dest / "blobs" / "sha256").iterdir():
        try:
            with tarfile.open(blob) as tar:
                for member in tar:
                    if member.isfile():
                        data = tar.extractfile(member)
                        files[member.name] = data.read() if data else b""
        except tarfile.ReadError:
            continue  # config or manifest blob
    return files


def all_blob_bytes(dest: Path) -> bytes:
    import gzip

    out = b""
    for blob in (dest / "blobs" / "sha256").iterdir():
        raw = blob.read_bytes()
        out += gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return out


@pytest.fixture(scope="module")
def project(live: LiveServer, sample_app: SampleApp) -> dict[str, str]:
    with live.client() as c:
        p = c.post("/v1/projects", json={"name": "e2e"}).json()["data"]["id"]
        vcs = {"projectUrl": sample_app.url, "projectType": "self-hosted"}
        ids = {"project": p}
        for path, name, extra in (
            ("services/combined", "web", {"projectBranch": "main"}),
            ("services/build", "builder", {}),
            ("jobs/manual", "migrate", {"projectBranch": "main"}),
        ):
            body = {
                "name": name,
                "vcsData": {**vcs, **extra},
                "buildSettings": {
                    "dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}
                },
                "buildArguments": {"GREETING": "stored"},
            }
            r = c.post(f"/v1/projects/{p}/{path}", json=body)
            assert r.status_code == 200, r.text
            ids[name] = r.json()["data"]["id"]
        return ids


def start(live: LiveServer, path: str, body: dict[str, Any]) -> str:
    with live.client() as c:
        r = c.post(f"{path}/build", json=body)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["status"] == "QUEUED" and data["concluded"] is False
        return str(data["id"])


def test_combined_service_builds_branch_tip_with_overrides(
    live: LiveServer, project: dict[str, str], sample_app: SampleApp, tmp_path: Path
) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['web']}"
    build_id = start(live, svc, {
        "overrides": {
            "buildArguments": {"GREETING": "override"},
            "buildFiles": {"/config/extra.txt": {"data": base64.b64encode(b"from-build-file").decode(), "encoding": "utf-8"}},
            "dockerSecretMounts": {"token": {"data": base64.b64encode(SECRET_VALUE.encode()).decode(), "encoding": "utf-8"}},
            "docker": {"dockerfileTarget": "final"},
        }
    })  # fmt: skip
    build = live.wait(f"{svc}/build/{build_id}")
    assert build["status"] == "SUCCESS", (build, live.logs(f"{svc}/build-logs", build_id)[-20:])
    assert build["success"] is True and build["sha"] == sample_app.main_sha
    assert build["branch"] == "main" and isinstance(build["buildConcludedAt"], int)
    uri = build["registry"]["uri"]
    assert uri.startswith(f"{live.registry}/{project['project']}/{project['web']}@sha256:")

    config = skopeo_inspect(live, uri, "--config")["config"]
    assert "GREETING=override" in config["Env"]  # override beat the stored argument
    files = image_files(live, uri, tmp_path / "oci")
    assert files["app/config/extra.txt"] == b"from-build-file"
    assert files["app/secret-check"] == b"secret-ok\n"
    assert files["app/greeting"] == b"built with override\n"
    assert SECRET_VALUE.encode() not in all_blob_bytes(tmp_path / "oci")

    logs = live.logs(f"{svc}/build-logs", build_id)
    assert any("==> building" in line for line in logs)
    assert not any(SECRET_VALUE in line for line in logs)
    # The tag by sha points at the same image.
    assert (
        skopeo_inspect(
            live, f"{live.registry}/{project['project']}/{project['web']}:{sample_app.main_sha}"
        )["Digest"]
        == uri.split("@")[1]
    )


def test_build_service_branch_and_pull_request(
    live: LiveServer, project: dict[str, str], sample_app: SampleApp
) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['builder']}"
    branch_build = start(
        live, svc, {"branch": "feature", "overrides": {"docker": {"dockerfileTarget": "base"}}}
    )
    pr_build = start(
        live, svc, {"pullRequestId": 5, "overrides": {"docker": {"dockerfileTarget": "base"}}}
    )
    b1 = live.wait(f"{svc}/build/{branch_build}")
    b2 = live.wait(f"{svc}/build/{pr_build}")
    assert (
        b1["status"] == "SUCCESS"
        and b1["sha"] == sample_app.feature_sha
        and b1["branch"] == "feature"
    )
    assert b2["status"] == "SUCCESS" and b2["sha"] == sample_app.pr_sha and b2["pullRequestId"] == 5
    skopeo_inspect(live, b1["registry"]["uri"])
    skopeo_inspect(live, b2["registry"]["uri"])


def test_job_build_with_dockerfile_path_and_work_dir(
    live: LiveServer, project: dict[str, str], sample_app: SampleApp, tmp_path: Path
) -> None:
    job = f"/v1/projects/{project['project']}/jobs/{project['migrate']}"
    build_id = start(live, job, {
        "sha": sample_app.main_sha,
        "overrides": {"docker": {"dockerFilePath": "/sub/Dockerfile.custom", "dockerWorkDir": "/sub"}},
    })  # fmt: skip
    build = live.wait(f"{job}/build/{build_id}")
    assert build["status"] == "SUCCESS", live.logs(f"{job}/build-logs", build_id)[-20:]
    files = image_files(live, build["registry"]["uri"], tmp_path / "oci")
    assert files["sub/hello.txt"] == b"hi\n"
    assert b"Dockerfile.custom" in files["sub-listing"] and b"app.txt" not in files["sub-listing"]


@pytest.fixture
def bundle_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    src = tmp_path / "bundle-src" / "project-1.0"
    src.mkdir(parents=True)
    (src / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (src / "hello.txt").write_text("from bundle\n")
    with tarfile.open(root / "app.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="project-1.0")
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bundle_build(
    live: LiveServer, project: dict[str, str], bundle_server: str, tmp_path: Path
) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['builder']}"
    build_id = start(live, svc, {"bundleUrl": f"{bundle_server}/app.tar.gz"})
    build = live.wait(f"{svc}/build/{build_id}")
    assert build["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-20:]
    files = image_files(live, build["registry"]["uri"], tmp_path / "oci")
    assert files["hello.txt"] == b"from bundle\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"branch": "main", "overrides": {"docker": {"dockerFilePath": "/docker/Dockerfile"}}},
            "Dockerfile not found at /docker/Dockerfile",
        ),
        (
            {"branch": "main", "overrides": {"docker": {"dockerfileTarget": "nope"}}},
            "unknown target stage 'nope'",
        ),
        ({"branch": "main", "sha": "0" * 40}, "not found"),
        ({"branch": "no-such-branch"}, "branch 'no-such-branch' not found"),
    ],
)
def test_failures_have_clear_messages(
    live: LiveServer, project: dict[str, str], body: dict[str, Any], message: str
) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['builder']}"
    build = live.wait(f"{svc}/build/{start(live, svc, body)}")
    assert build["status"] == "FAILURE" and build["concluded"] is True and build["success"] is False
    assert message in build["message"], build


def test_abort_running_build_within_5_seconds(live: LiveServer, project: dict[str, str]) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['builder']}"
    build_id = start(
        live, svc, {"branch": "main", "overrides": {"docker": {"dockerfileTarget": "slow"}}}
    )
    deadline = time.monotonic() + 60
    with live.client() as c:
        while (
            c.get(
                f"{svc}/build-logs", params={"buildId": build_id, "textIncludes": "sleep 300"}
            ).json()["data"]
            == []
        ):
            assert time.monotonic() < deadline, "build never reached RUN sleep"
            time.sleep(0.2)
        time.sleep(0.5)
        started = time.monotonic()
        r = c.delete(f"{svc}/build/{build_id}")
        assert r.status_code == 200, r.text
    build = live.wait(f"{svc}/build/{build_id}", timeout=10)
    elapsed = time.monotonic() - started
    assert build["status"] == "ABORTED" and build["concluded"] is True
    assert elapsed < 5, elapsed
    assert running_containers_under(live.data_dir) == [], "the RUN step survived the abort"


def test_base_image_pulled_from_the_embedded_registry(live: LiveServer, tmp_path: Path) -> None:
    from shipyard.pipeline.builder import BuildahStore
    from tests.helpers.images import BUSYBOX_IMAGE

    store = BuildahStore(
        root=live.data_dir / "base-images" / "root",
        runroot=live.data_dir / "base-images" / "runroot",
    )
    # A shared base image (SHIPYARD_REGISTRY_SHARED_PREFIXES), published by the operator.
    base = f"{live.registry}/shared/busybox:1"
    subprocess.run(
        [
            "buildah",
            *store.args(),
            "push",
            "--tls-verify=false",
            "--authfile",
            str(live.authfile),
            BUSYBOX_IMAGE,
            f"docker://{base}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    repo = tmp_path / "from-registry"
    repo.mkdir()
    (repo / "Dockerfile").write_text(f"FROM {base}\nRUN echo pulled > /proof\n")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    with live.client() as c:
        c.post("/v1/projects", json={"name": "base-pull"})
        c.post(
            "/v1/projects/base-pull/services/build",
            json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}},
        )
        build_id = c.post(
            "/v1/projects/base-pull/services/s/build", json={"branch": "main"}
        ).json()["data"]["id"]
    build = live.wait(f"/v1/projects/base-pull/services/s/build/{build_id}")
    assert build["status"] == "SUCCESS", live.logs(
        "/v1/projects/base-pull/services/s/build-logs", build_id
    )[-15:]
    assert image_files(live, build["registry"]["uri"], tmp_path / "oci")["proof"] == b"pulled\n"


def test_identical_rebuild_reuses_the_image(
    live: LiveServer, project: dict[str, str], sample_app: SampleApp
) -> None:
    svc = f"/v1/projects/{project['project']}/services/{project['builder']}"
    body = {
        "branch": "main",
        "overrides": {
            "buildArguments": {"GREETING": "reuse"},
            "docker": {"dockerfileTarget": "final"},
        },
    }
    first = live.wait(f"{svc}/build/{start(live, svc, body)}")
    assert first["status"] == "SUCCESS" and "reused" not in first["message"]
    again = live.wait(f"{svc}/build/{start(live, svc, body)}")
    assert again["status"] == "SUCCESS" and again["sha"] == sample_app.main_sha
    assert again["registry"]["uri"] == first["registry"]["uri"]
    assert f"reused from build {first['id']}" in again["message"]
    assert not any(line.startswith("STEP ") for line in live.logs(f"{svc}/build-logs", again["id"]))
    # Anything that shapes the image differently builds again.
    changed = {
        "branch": "main",
        "overrides": {
            "buildArguments": {"GREETING": "other"},
            "docker": {"dockerfileTarget": "final"},
        },
    }
    rebuilt = live.wait(f"{svc}/build/{start(live, svc, changed)}")
    assert rebuilt["status"] == "SUCCESS" and "reused" not in rebuilt["message"]
    assert rebuilt["registry"]["uri"] != first["registry"]["uri"]
    by_sha = live.wait(f"{svc}/build/{start(live, svc, {**body, 'sha': sample_app.main_sha})}")
    assert (
        "reused from build" in by_sha["message"]
        and by_sha["registry"]["uri"] == first["registry"]["uri"]
    )
