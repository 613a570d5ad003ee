"""The same API and worker queries on PostgreSQL (the scale-out database), in a fresh
database per test module on the machine's PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.builds.status import BuildStatus
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from shipyard.store import builds as build_store
from tests.conftest import SHA
from tests.helpers.pg import scratch_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with scratch_database("shipyard_test") as url:
        yield url


@pytest.fixture
def pg_client(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = prepare(Settings(data_dir=tmp_path / "data", database_url=pg_url))
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
        assert settings.admin_token is not None
        client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield client


def test_api_flow_on_postgres(pg_client: TestClient) -> None:
    c = pg_client
    project = c.post("/v1/projects", json={"name": f"pg {uuid.uuid4().hex[:6]}"}).json()["data"][
        "id"
    ]
    r = c.post(
        f"/v1/projects/{project}/services/build",
        json={"name": "svc", "vcsData": {"projectUrl": "file:///r"}, "buildArguments": {"A": "1"}},
    )
    assert r.status_code == 200, r.text
    path = f"/v1/projects/{project}/services/svc/build"
    ids = [c.post(path, json={"branch": "main", "sha": SHA}).json()["data"]["id"] for _ in range(3)]
    page = c.get(path, params={"per_page": 2}).json()
    assert [b["id"] for b in page["data"]["builds"]] == ids[::-1][:2]
    rest = c.get(path, params={"per_page": 2, "cursor": page["pagination"]["cursor"]}).json()
    assert [b["id"] for b in rest["data"]["builds"]] == ids[:1]
    assert c.delete(f"{path}/{ids[0]}").json()["data"]["status"] == "ABORTED"
    again = c.post(path, json={"branch": "main"}, headers={"Idempotency-Key": "k"}).json()["data"][
        "id"
    ]
    assert (
        c.post(path, json={"branch": "main"}, headers={"Idempotency-Key": "k"}).json()["data"]["id"]
        == again
    )
    assert c.post(path, json={"sha": "x"}).status_code == 400


def test_claim_and_fence_on_postgres(pg_client: TestClient) -> None:
    c = pg_client
    project = c.post("/v1/projects", json={"name": f"pg {uuid.uuid4().hex[:6]}"}).json()["data"][
        "id"
    ]
    c.post(
        f"/v1/projects/{project}/services/build",
        json={"name": "svc", "vcsData": {"projectUrl": "file:///r"}},
    )
    build_id = c.post(f"/v1/projects/{project}/services/svc/build", json={"branch": "main"}).json()[
        "data"
    ]["id"]
    sessions = c.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        assert build_store.claim(session, build_id, "w1") == 1
        assert build_store.claim(session, build_id, "w2") is None
        assert build_store.heartbeat(session, build_id, 1) is False
        assert not build_store.fenced_update(session, build_id, 0, status=BuildStatus.BUILDING)
        assert build_store.conclude(session, build_id, 1, BuildStatus.SUCCESS, "ok")
        assert build_store.heartbeat(session, build_id, 1) is None
        session.commit()
