"""Prometheus metrics read from the build table."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_metrics(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    first = client.post(path, json={"branch": "main"}).json()["data"]["id"]
    client.post(path, json={"branch": "main"})
    client.delete(f"{path}/{first}")
    text = client.get("/metrics", headers={"Authorization": ""}).text
    assert 'shipyard_builds{status="QUEUED"} 1.0' in text
    assert 'shipyard_builds{status="ABORTED"} 1.0' in text
    assert "shipyard_queue_oldest_age_seconds" in text
