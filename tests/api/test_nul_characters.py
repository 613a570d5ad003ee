"""Hostile-tenant finding (the route sweep on PostgreSQL): a NUL character in a path, a
query or a JSON string reached PostgreSQL, which cannot store one in text, and came back as
a 500 (SQLite stores it). Now paths and queries with NUL are refused before routing (400;
a websocket is closed 1008), and a value the database refuses is the caller's 400 with
nothing stored — on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from tests.api.test_start_build_rules import assert_error
from tests.helpers.pg import scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def loose(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with scratch_database("shipyard_nul") if request.param == "postgresql" else _none() as url:
        settings = prepare(
            Settings(data_dir=tmp_path / "data", database_url=url, admin_token=None,
                     secret_key=None)
        )  # fmt: skip
        app = create_app(settings, lambda *_: NullExecutor())
        with TestClient(app, raise_server_exceptions=False) as c:
            assert settings.admin_token is not None
            c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
            yield c


class _none:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def test_nul_in_paths_and_queries(loose: TestClient) -> None:
    project = loose.post("/v1/projects", json={"name": "Demo"}).json()["data"]["id"]
    for path in ("/v1/projects/a%00b", f"/v1/projects/{project}/services/x%00/build"):
        error = assert_error(loose.get(path), 400)
        assert "NUL" in error["message"]
    r = loose.get(f"/v1/projects/{project}/services/web/build-logs", params={"buildId": "\x00"})
    assert_error(r, 400)
    tail = f"/v1/projects/{project}/services/a%00/build-logs"
    with pytest.raises(WebSocketDisconnect) as closed, loose.websocket_connect(tail) as ws:
        ws.receive_json()
    assert closed.value.code == 1008


def test_nul_in_bodies_is_400_and_nothing_is_stored(loose: TestClient) -> None:
    r = loose.post("/v1/projects", json={"name": "a\u0000b"})
    assert r.status_code in (200, 400), r.text  # SQLite stores it; PostgreSQL cannot
    if r.status_code == 400:
        assert "NUL" in r.json()["error"]["message"]
        assert loose.get("/v1/projects").json()["data"]["projects"] == []
    project = loose.post("/v1/projects", json={"name": "Demo"}).json()["data"]["id"]
    body = {"name": "web", "description": "x\u0000y",
            "vcsData": {"projectUrl": "file:///nowhere", "projectType": "self-hosted",
                        "projectBranch": "main"}}  # fmt: skip
    r = loose.post(f"/v1/projects/{project}/services/combined", json=body)
    assert r.status_code in (200, 400), r.text  # SQLite stores it; PostgreSQL cannot
    if r.status_code == 400:
        assert "NUL" in r.json()["error"]["message"]
        services = loose.get(f"/v1/projects/{project}/services").json()["data"]["services"]
        assert services == []  # nothing half-made
