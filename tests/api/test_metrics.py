"""Prometheus metrics read from the build table; a token when SHIPYARD_METRICS_TOKEN is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings
from tests.api.tenants import project_token
from tests.api.test_start_build_rules import assert_error
from tests.conftest import Factory


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


def test_fleet_metrics(client: TestClient, targets: dict[str, str]) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from shipyard.store import builds as build_store
    from shipyard.store import workers as worker_store
    from shipyard.store.models import Build, Worker

    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    project = targets["project"]
    path = f"/v1/projects/{project}/services/{targets['build']}/build"
    held, _, _ = (client.post(path, json={"branch": "main"}).json()["data"]["id"] for _ in range(3))
    with sessions() as session:
        assert build_store.claim(session, held, "w-live") == 1
        worker_store.register(session, "w-live", "host-a", 11, 2)
        worker_store.register(session, "w-dead", "host-b", 12, 4)
        session.execute(
            update(Worker)
            .where(Worker.id == "w-dead")
            .values(last_heartbeat_at=build_store.now() - timedelta(minutes=5))
        )
        session.execute(
            update(Build)
            .where(Build.id == held)
            .values(heartbeat_at=build_store.now() - timedelta(seconds=7))
        )
        session.commit()
    text = client.get("/metrics").text  # the admin token: the detail
    assert f'shipyard_queue_depth{{project="{project}"}} 2.0' in text
    assert 'shipyard_worker_running_builds{worker="w-live"} 1.0' in text
    assert 'shipyard_worker_running_builds{worker="w-dead"} 0.0' in text
    assert 'shipyard_worker_up{hostname="host-a",worker="w-live"} 1.0' in text
    assert 'shipyard_worker_up{hostname="host-b",worker="w-dead"} 0.0' in text
    assert 'shipyard_worker_slots{worker="w-dead"} 4.0' in text
    (age,) = [
        line for line in text.splitlines()
        if line.startswith(f'shipyard_build_heartbeat_age_seconds{{build_id="{held}"')
    ]  # fmt: skip
    assert 'worker="w-live"' in age and 7 <= float(age.rsplit(" ", 1)[1]) < 60
    assert "shipyard_worker_heartbeat_age_seconds" in text


def test_anonymous_metrics_are_aggregates_only(
    client: TestClient, factory: Factory, targets: dict[str, str]
) -> None:
    """Hostile-tenant finding: an anonymous scrape listed every project id (queue depth per
    project), running build ids and worker host names. Anonymous (or any non-admin token)
    now gets aggregates only; the admin token (or SHIPYARD_METRICS_TOKEN) the detail."""
    from sqlalchemy import update

    from shipyard.store import builds as build_store
    from shipyard.store import workers as worker_store
    from shipyard.store.models import Build

    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    project = targets["project"]
    path = f"/v1/projects/{project}/services/{targets['build']}/build"
    held, _ = (client.post(path, json={"branch": "main"}).json()["data"]["id"] for _ in range(2))
    with sessions() as session:
        assert build_store.claim(session, held, "w-secret") == 1
        worker_store.register(session, "w-secret", "internal-host.corp", 11, 2)
        session.execute(
            update(Build).where(Build.id == held).values(heartbeat_at=build_store.now())
        )
        session.commit()
    other = factory.client.post(
        "/v1/projects", json={"name": "Other"}
    ).json()["data"]["id"]  # fmt: skip
    tenant = project_token(client, other)
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {tenant}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        text = response.text
        for secret in (project, held, "w-secret", "internal-host.corp"):
            assert secret not in text, secret
        assert 'shipyard_builds{status="QUEUED"} 1.0' in text
        assert 'shipyard_workers{state="up"} 1.0' in text
        assert "shipyard_queue_depth{" not in text
    detail = client.get("/metrics").text
    assert f'shipyard_queue_depth{{project="{project}"}} 1.0' in detail
    assert "internal-host.corp" in detail
