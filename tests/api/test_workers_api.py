"""GET /v1/workers: the admin token only; each worker's liveness, last heartbeat and the
builds it holds (from the build rows), and holders without a worker row."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from shipyard.builds.permissions import ALL
from shipyard.store import builds as build_store
from shipyard.store import workers as worker_store
from shipyard.store.models import Worker
from tests.api.test_auth import make_token
from tests.api.test_start_build_rules import assert_error


def test_workers_listing(client: TestClient, targets: dict[str, str]) -> None:
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    a, b, c = (client.post(path, json={"branch": "main"}).json()["data"]["id"] for _ in range(3))
    with sessions() as session:
        worker_store.register(session, "w-live", "host-a", 11, 2)
        worker_store.register(session, "w-dead", "host-b", 12, 4)
        session.execute(
            update(Worker)
            .where(Worker.id == "w-dead")
            .values(last_heartbeat_at=build_store.now() - timedelta(minutes=5))
        )
        assert build_store.claim(session, a, "w-live") == 1
        assert build_store.claim(session, b, "w-ghost") == 1
        session.commit()
    response = client.get("/v1/workers")
    assert response.status_code == 200, response.text
    listed = {w["id"]: w for w in response.json()["data"]["workers"]}
    assert list(listed) == ["w-live", "w-dead", "w-ghost"]
    live, dead, ghost = listed["w-live"], listed["w-dead"], listed["w-ghost"]
    assert live["alive"] is True and live["builds"] == [a] and live["running"] == 1
    assert live["hostname"] == "host-a" and live["pid"] == 11 and live["concurrency"] == 2
    assert live["lastHeartbeatAt"].endswith("Z") and live["heartbeatAgeS"] >= 0
    assert dead["alive"] is False and dead["builds"] == [] and dead["heartbeatAgeS"] >= 300
    assert ghost["alive"] is None and ghost["builds"] == [b] and ghost["hostname"] is None
    assert c not in response.text  # queued: nobody holds it


def test_only_the_admin_token_lists_workers(client: TestClient) -> None:
    everything = {"Authorization": f"Bearer {make_token(client, [p.value for p in ALL])}"}
    assert_error(client.get("/v1/workers", headers=everything), 403)
    assert_error(client.get("/v1/workers", headers={"Authorization": "Bearer nope"}), 401)
