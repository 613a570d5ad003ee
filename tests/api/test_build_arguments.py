"""Stored build arguments / files / secret mounts: encrypted, shown only with the permission,
merged under a build's overrides."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds import service as build_service
from shipyard.builds.permissions import Permission
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store
from tests.api.test_auth import make_token
from tests.api.test_start_build_rules import assert_error


def test_get_and_replace(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build-arguments"
    assert client.get(path).json()["data"] == {"buildArguments": {}, "buildFiles": {}}
    body = {
        "buildArguments": {"NPM_TOKEN": "tok-value-123", "MODE": "prod"},
        "buildFiles": {"/etc/app.conf": {"data": "conf-secret-body"}},
        "dockerSecretMounts": {"ssh": {"data": "c3NoLWtleQ==", "encoding": "base64"}},
    }
    updated = client.post(path, json=body)
    assert updated.status_code == 200, updated.text
    assert "tok-value-123" not in updated.text
    got = client.get(path).json()["data"]
    assert got["buildArguments"] == {"NPM_TOKEN": "tok-value-123", "MODE": "prod"}
    assert got["buildFiles"] == {
        "/etc/app.conf": {"data": "Y29uZi1zZWNyZXQtYm9keQ==", "encoding": "base64"}
    }
    assert client.get(path, params={"show": "inherited"}).json()["data"]["buildArguments"] == {}
    assert_error(
        client.post(path, json={"buildArguments": {"BAD KEY": "x"}}), 400, "buildArguments"
    )
    assert_error(client.post(path, json={"docker": {}}), 400, "docker")
    db = b"".join(
        p.read_bytes() for p in client.app.state.shipyard.settings.data_dir.glob("shipyard.db*")
    )  # type: ignore[attr-defined]
    assert b"tok-value-123" not in db and b"conf-secret-body" not in db


def test_permissions(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/jobs/{targets['job']}/build-arguments"
    reader = make_token(client, [Permission.JOBS_READ])
    assert_error(client.get(path, headers={"Authorization": f"Bearer {reader}"}), 403)
    assert_error(client.post(path, json={}, headers={"Authorization": f"Bearer {reader}"}), 403)
    assert_error(client.get(path.replace(targets["job"], "nope")), 404)


def test_stored_values_are_merged_under_overrides(
    client: TestClient, targets: dict[str, str]
) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    svc = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    client.post(f"{svc}/build-arguments", json={
        "buildArguments": {"A": "stored", "B": "stored"},
        "buildFiles": {"/f1": {"data": "stored-file"}, "/f2": {"data": "stored-file"}},
        "dockerSecretMounts": {"s1": {"data": "stored-secret"}},
    })  # fmt: skip
    build_id = client.post(f"{svc}/build", json={"branch": "main", "overrides": {
        "buildArguments": {"B": "override"}, "buildFiles": {"/f2": {"data": "override-file"}},
    }}).json()["data"]["id"]  # fmt: skip
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        request = build_service.load_request(
            state.box, workload_store.get_by_id(session, build.workload_id), build
        )
    o = request.overrides
    assert o.build_arguments == {"A": "stored", "B": "override"}
    assert o.build_files == {"/f1": b"stored-file", "/f2": b"override-file"}
    assert o.secret_mounts == {"s1": b"stored-secret"}
