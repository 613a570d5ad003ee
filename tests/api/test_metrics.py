"""Prometheus metrics read from the build table; a token when SHIPYARD_METRICS_TOKEN is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings
from tests.api.test_start_build_rules import assert_error


def test_metrics(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    first = client.post(path, json={"branch": "main"}).json()["data"]["id"]
    client.post(path, json={"branch": "main"})
    client.delete(f"{path}/{first}")
    text = client.get("/metrics", headers={"Authorization": ""}).text
    assert 'shipyard_builds{status="QUEUED"} 1.0' in text
    assert 'shipyard_builds{status="ABORTED"} 1.0' in text
    assert "shipyard_queue_oldest_age_seconds" in text


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(update={"metrics_token": SecretStr("scrape-me")}),
        lambda *_: NullExecutor(),
    )
    with TestClient(app) as c:
        yield c


def test_metrics_token_when_set(guarded: TestClient, settings: Settings) -> None:
    assert settings.admin_token is not None
    admin = settings.admin_token.get_secret_value()
    for headers in ({"Authorization": "Bearer scrape-me"}, {"Authorization": f"Bearer {admin}"}):
        response = guarded.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        assert "shipyard_builds" in response.text
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me"}):
        error = assert_error(guarded.get("/metrics", headers=headers), 401)
        assert "token" in error["message"]


def test_metrics_open_by_default(client: TestClient, settings: Settings) -> None:
    assert settings.metrics_token is None
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 200
