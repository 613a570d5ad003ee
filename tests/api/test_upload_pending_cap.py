"""Hostile-tenant finding: a project could keep any number of uploads pending (each up to
SHIPYARD_MAX_UPLOAD_BYTES, kept for SHIPYARD_UPLOAD_TTL_S), filling the data dir. Now at most
SHIPYARD_MAX_PENDING_UPLOADS per project are received or waiting for a build: 429 past it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.api.guards import slots
from shipyard.builds.errors import TooManyRequests
from shipyard.settings import Settings
from shipyard.uploads import store as uploads
from tests.api.test_start_build_rules import assert_error
from tests.api.test_uploads import CONTEXT
from tests.conftest import Factory


def test_pending_uploads_are_capped_per_project(
    client: TestClient, settings: Settings, factory: Factory, targets: dict[str, str]
) -> None:
    assert Settings.model_fields["max_pending_uploads"].default == 8
    settings.max_pending_uploads = 2
    p, s = targets["project"], targets["build"]
    first, _ = (
        client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).json()["data"]["id"]
        for _ in range(2)
    )
    refused = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT)
    error = assert_error(refused, 429, "SHIPYARD_MAX_PENDING_UPLOADS")
    assert error["id"] == "rate-limited" and error["details"] == {"maxPendingUploads": 2}
    assert refused.headers["Retry-After"].isdigit()
    assert len(list(uploads.uploads_dir(settings.data_dir).glob("*.tar"))) == 2  # nothing kept

    # Another project is not held back by this one's.
    other = factory.project("Other")
    assert client.post(f"/v1/projects/{other}/uploads", content=CONTEXT).status_code == 200

    # Starting a build from one frees its place.
    started = client.post(f"/v1/projects/{p}/services/{s}/build", json={"uploadId": first})
    assert started.status_code == 200, started.text
    assert client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).status_code == 200
    assert_error(client.post(f"/v1/projects/{p}/uploads", content=CONTEXT), 429)


def test_uploads_being_received_count(
    client: TestClient, settings: Settings, targets: dict[str, str]
) -> None:
    """Parallel uploads still streaming count too (else N at once pass a check of the rows)."""
    settings.max_pending_uploads = 2
    p = targets["project"]
    receiving = slots(client.app, "uploads")
    refusal = TooManyRequests("held")
    receiving.acquire(p, 2, refusal)
    receiving.acquire(p, 2, refusal)
    try:
        assert_error(client.post(f"/v1/projects/{p}/uploads", content=CONTEXT), 429)
    finally:
        receiving.release(p)
        receiving.release(p)
    assert receiving.held(p) == 0
    assert client.post(f"/v1/projects/{p}/uploads", content=CONTEXT).status_code == 200
    assert receiving.held(p) == 0  # given back after a success and after a refusal
    bad = client.post(f"/v1/projects/{p}/uploads", content=b"not a tar" * 100)
    assert_error(bad, 400)
    assert receiving.held(p) == 0
