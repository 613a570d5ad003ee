"""``GET …/build/{id}/sbom|provenance``: permission like reading the build, 404 for a build
without an image (the documents themselves: tests/e2e/test_supply_chain.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds.permissions import Permission
from tests.api.test_auth import make_token


def test_a_build_without_an_image_has_no_sbom_or_provenance(
    client: TestClient, targets: dict[str, str]
) -> None:
    p = targets["project"]
    for entity, slug in (("services", targets["combined"]), ("jobs", targets["job"])):
        build = client.post(f"/v1/projects/{p}/{entity}/{slug}/build", json={}).json()["data"]
        for kind in ("sbom", "provenance"):
            r = client.get(f"/v1/projects/{p}/{entity}/{slug}/build/{build['id']}/{kind}")
            assert r.status_code == 404, r.text
            assert r.json()["error"]["id"] == f"{kind}-not-found"
        r = client.get(f"/v1/projects/{p}/{entity}/{slug}/build/no-such-0000/sbom")
        assert r.status_code == 404


def test_reading_needs_the_build_read_permission(
    client: TestClient, targets: dict[str, str]
) -> None:
    p, s = targets["project"], targets["combined"]
    build = client.post(f"/v1/projects/{p}/services/{s}/build", json={}).json()["data"]
    path = f"/v1/projects/{p}/services/{s}/build/{build['id']}/sbom"
    logs_only = make_token(client, [Permission.SERVICES_VIEW_LOGS], p)
    r = client.get(path, headers={"Authorization": f"Bearer {logs_only}"})
    assert r.status_code == 403
    reader = make_token(client, [Permission.SERVICES_READ], p)
    r = client.get(path, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 404  # allowed; there is just no SBOM yet
