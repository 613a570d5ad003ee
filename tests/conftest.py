"""Shared fixtures: an API on a temp data dir (builds stay QUEUED: no executor), and factories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare

pytest_plugins = ["tests.helpers.live", "tests.helpers.databases"]

SHA = "262ed9817b3cad5142fbceabe0c9e371e390d616"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return prepare(Settings(data_dir=tmp_path / "data", admin_token=None, secret_key=None))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


class Factory:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body["data"]  # type: ignore[no-any-return]

    def project(self, name: str = "Demo") -> str:
        return str(self.ok("POST", "/v1/projects", json={"name": name})["id"])

    def workload(
        self,
        project: str,
        path: str,
        name: str,
        url: str = "file:///nowhere",
        branch: str | None = "main",
        **extra: Any,
    ) -> str:
        vcs: dict[str, Any] = {"projectUrl": url, "projectType": "self-hosted"}
        if branch is not None:
            vcs["projectBranch"] = branch
        body = {"name": name, "vcsData": vcs, **extra}
        return str(self.ok("POST", f"/v1/projects/{project}/{path}", json=body)["id"])


@pytest.fixture
def factory(client: TestClient) -> Factory:
    return Factory(client)


@pytest.fixture
def targets(factory: Factory) -> dict[str, str]:
    """A project with a build service, a combined service and a manual job."""
    project = factory.project()
    return {
        "project": project,
        "build": factory.workload(project, "services/build", "builder", branch=None),
        "combined": factory.workload(project, "services/combined", "web"),
        "job": factory.workload(project, "jobs/manual", "migrate"),
    }
