"""``POST /v1/projects/{p}/uploads`` and builds started from an upload (``uploadId``)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from shipyard.builds.permissions import Permission
from shipyard.settings import Settings
from shipyard.uploads import store as uploads
from tests.api.test_auth import make_token
from tests.api.test_start_build_rules import assert_error


def tar_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


CONTEXT = tar_bytes({"Dockerfile": b"FROM scratch\n"})


def test_upload_then_build_it_once(
    client: TestClient, targets: dict[str, str], settings: Settings
) -> None:
    p, s = targets["project"], targets["combined"]
    r = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["size"] == len(CONTEXT) and data["digest"].startswith("sha256:")
    assert uploads.archive_path(settings.data_dir, data["id"]).read_bytes() == CONTEXT
    started = client.post(f"/v1/projects/{p}/services/{s}/build", json={"uploadId": data["id"]})
    assert started.status_code == 200, started.text
    build = started.json()["data"]
    assert build["uploadId"] == data["id"] and "bundleUrl" not in build
    fetched = client.get(f"/v1/projects/{p}/services/{s}/build/{build['id']}").json()["data"]
    assert fetched["uploadId"] == data["id"]
    again = client.post(f"/v1/projects/{p}/services/{s}/build", json={"uploadId": data["id"]})
    assert assert_error(again, 400, "already built")["id"] == "invalid-request"


def test_an_upload_builds_only_in_its_own_project_and_not_for_jobs(
    client: TestClient, targets: dict[str, str], factory: object
) -> None:
    p = targets["project"]
    other = client.post("/v1/projects", json={"name": "other"}).json()["data"]["id"]
    upload_id = client.post(f"/v1/projects/{other}/uploads", content=CONTEXT).json()["data"]["id"]
    r = client.post(f"/v1/projects/{p}/services/{targets['combined']}/build",
                    json={"uploadId": upload_id})  # fmt: skip
    assert assert_error(r, 400, "does not exist in this project")["id"] == "invalid-request"
    r = client.post(f"/v1/projects/{p}/jobs/{targets['job']}/build", json={"uploadId": upload_id})
    assert r.status_code == 400
    mine = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).json()["data"]["id"]
    r = client.post(f"/v1/projects/{p}/services/{targets['combined']}/build",
                    json={"uploadId": mine, "bundleUrl": "https://x/y.tgz"})  # fmt: skip
    assert r.status_code == 400
    r = client.post(f"/v1/projects/{p}/services/{targets['combined']}/build",
                    json={"uploadId": "upload-nope"})  # fmt: skip
    assert assert_error(r, 400, "uploadId")["id"] == "invalid-request"


def test_too_large_is_413_and_nothing_is_kept(
    client: TestClient, targets: dict[str, str], settings: Settings
) -> None:
    settings.max_upload_bytes = 1024
    big = tar_bytes({"Dockerfile": b"FROM scratch\n", "blob": os.urandom(4096)})
    # Declared length: refused before a byte is read; chunked: refused while it streams.
    r = client.post(f"/v1/projects/{targets['project']}/uploads", content=big)
    assert assert_error(r, 413, "SHIPYARD_MAX_UPLOAD_BYTES")["id"] == "payload-too-large"
    chunks = iter([big[:600], big[600:]])
    r = client.post(f"/v1/projects/{targets['project']}/uploads", content=chunks)
    assert assert_error(r, 413, "larger than 1024 bytes")["id"] == "payload-too-large"
    assert list(uploads.uploads_dir(settings.data_dir).glob("*")) == []


def test_not_a_tar_or_empty_is_400(client: TestClient, targets: dict[str, str]) -> None:
    r = client.post(f"/v1/projects/{targets['project']}/uploads", content=b"hello" * 200)
    assert assert_error(r, 400, "not a tar")["id"] == "invalid-request"
    r = client.post(f"/v1/projects/{targets['project']}/uploads", content=b"")
    assert assert_error(r, 400, "empty")["id"] == "invalid-request"


def test_permission_and_project_checks(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    reader = make_token(client, [Permission.SERVICES_READ], p)
    r = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT,
                    headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
    assert r.status_code == 403
    deployer = make_token(client, [Permission.SERVICES_DEPLOY_BUILD], p)
    r = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT,
                    headers={"Authorization": f"Bearer {deployer}"})  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.post("/v1/projects/nope/uploads", content=CONTEXT)
    assert r.status_code == 404


def test_sweep_removes_orphans_and_keeps_fresh_ones(
    client: TestClient, targets: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    p = targets["project"]
    fresh = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).json()["data"]["id"]
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    assert uploads.sweep(sessions, settings.data_dir, ttl_s=3600) == 0
    assert uploads.archive_path(settings.data_dir, fresh).exists()
    assert uploads.sweep(sessions, settings.data_dir, ttl_s=-1) == 1
    assert not uploads.archive_path(settings.data_dir, fresh).exists()


def test_aborting_a_queued_upload_build_deletes_the_upload(
    client: TestClient, targets: dict[str, str], settings: Settings
) -> None:
    p, s = targets["project"], targets["combined"]
    upload_id = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).json()["data"]["id"]
    build = client.post(f"/v1/projects/{p}/services/{s}/build", json={"uploadId": upload_id})
    assert uploads.archive_path(settings.data_dir, upload_id).exists()
    r = client.delete(f"/v1/projects/{p}/services/{s}/build/{build.json()['data']['id']}")
    assert r.status_code == 200 and r.json()["data"]["status"] == "ABORTED"
    assert not uploads.archive_path(settings.data_dir, upload_id).exists()
