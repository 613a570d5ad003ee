"""``POST /v1/gc`` (admin only), a service's ``retention``, how a collected build reads, and
the disk gauges of ``/metrics``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import update

from shipyard.builds.permissions import ALL
from shipyard.store import tokens as token_store
from shipyard.store.models import Build
from tests.api.test_start_build_rules import assert_error


def test_gc_needs_the_admin_token_and_an_executor(client: TestClient) -> None:
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        _, token = token_store.create(
            session, name="ops", permissions=[p.value for p in ALL], project_id=None
        )
        session.commit()
    refused = client.post("/v1/gc", headers={"Authorization": f"Bearer {token}"})
    assert_error(refused, 403)
    # API-only mode (no executor): there is nothing to collect.
    assert_error(client.post("/v1/gc", params={"dryRun": "true"}), 409)


def test_retention_of_a_service(client: TestClient, targets: dict[str, str]) -> None:
    project = targets["project"]
    path = f"/v1/projects/{project}/services/combined"
    body = {
        "name": "kept",
        "vcsData": {"projectUrl": "file:///r", "projectBranch": "main"},
        "retention": {"keepLast": 3, "keepDays": 0},
    }
    created = client.post(path, json=body)
    assert created.status_code == 200, created.text
    service_id = created.json()["data"]["id"]
    service, edit = f"/v1/projects/{project}/services/{service_id}", f"{path}/{service_id}"
    assert client.get(service).json()["data"]["retention"] == {"keepLast": 3, "keepDays": 0}
    patched = client.patch(edit, json={"retention": {"keepLast": 5}})
    assert patched.status_code == 200, patched.text
    assert client.get(service).json()["data"]["retention"] == {"keepLast": 5, "keepDays": 0}
    # The newest image always stays: keep-last 0 is refused, as are unknown fields.
    for bad in ({"keepLast": 0}, {"keepDays": -1}, {"keep": 1}):
        assert_error(client.patch(edit, json={"retention": bad}), 400, "retention")


def test_a_collected_build_says_so(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['combined']}/build"
    build_id = client.post(path, json={}).json()["data"]["id"]
    uri = "127.0.0.1:5000/p/web@sha256:" + "a" * 64
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        session.execute(
            update(Build)
            .where(Build.id == build_id)
            .values(
                status="SUCCESS", concluded=True, success=True, registry_uri=uri,
                message="Image successfully built", concluded_at=datetime.now(UTC),
                image_collected_at=datetime(2026, 12, 4, 3, 0, tzinfo=UTC),
            )
        )  # fmt: skip
        session.commit()
    data = client.get(f"{path}/{build_id}").json()["data"]
    assert data["registry"] == {
        "uri": uri,
        "imageCollected": True,
        "collectedAt": "2026-12-04T03:00:00.000Z",
    }
    assert data["message"] == (
        "Image successfully built; image removed by garbage collection on 2026-12-04"
    )
    listed = client.get(path).json()["data"]["builds"]
    assert listed[0]["registry"]["imageCollected"] is True


def test_metrics_report_disk_use(client: TestClient) -> None:
    text = client.get("/metrics").text
    for part in ("stores", "base_images", "registry", "logs"):
        assert f'shipyard_disk_bytes{{part="{part}"}}' in text, part
