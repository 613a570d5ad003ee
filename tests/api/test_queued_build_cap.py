"""Hostile-tenant finding: a project could queue builds without end (each start is one
request), and every dispatch, fairness pass and queue notice scans the queue. Now at most
SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT (200) QUEUED builds per project: 429 past it, for
starts and reruns alike; an Idempotency-Key replay still answers; other projects are not
held back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.settings import Settings
from tests.api.test_start_build_rules import assert_error
from tests.conftest import Factory


def test_queued_builds_are_capped_per_project(
    client: TestClient, settings: Settings, factory: Factory, targets: dict[str, str]
) -> None:
    assert Settings.model_fields["max_queued_builds_per_project"].default == 200
    settings.max_queued_builds_per_project = 2
    p = targets["project"]
    builds = f"/v1/projects/{p}/services/{targets['build']}/build"
    job = f"/v1/projects/{p}/jobs/{targets['job']}/build"
    first = client.post(builds, json={"branch": "main"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 200, first.text
    assert client.post(job, json={}).status_code == 200  # jobs count too: per project

    refused = client.post(builds, json={"branch": "main"})
    error = assert_error(refused, 429, "SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT")
    assert error["id"] == "rate-limited" and refused.headers["Retry-After"].isdigit()
    assert error["details"] == {"maxQueuedBuilds": 2}
    build_id = first.json()["data"]["id"]
    assert_error(client.post(f"{builds}/{build_id}/rerun"), 429)
    # The same request again with its key is a replay, not a new build.
    again = client.post(builds, json={"branch": "main"}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["data"]["id"] == build_id

    other = factory.project("Other")
    svc = factory.workload(other, "services/build", "b", branch=None)
    assert client.post(f"/v1/projects/{other}/services/{svc}/build",
                       json={"branch": "main"}).status_code == 200  # fmt: skip

    assert client.delete(f"{builds}/{build_id}").status_code == 200  # aborted: a place frees
    assert client.post(builds, json={"branch": "main"}).status_code == 200
    assert len(client.get(builds).json()["data"]["builds"]) == 2  # nothing half-made
