"""PUT/GET/DELETE /v1/projects/{p}/registry-pull-credentials: sealed, never echoed, checked."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds import pull_credentials
from shipyard.builds.permissions import Permission
from shipyard.store import projects as project_store
from tests.api.test_auth import make_token
from tests.api.test_build_arguments import db_bytes
from tests.api.test_start_build_rules import assert_error

PASSWORD = "pull-secret-93ab71"


def test_stored_sealed_and_never_echoed(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    path = f"/v1/projects/{p}/registry-pull-credentials"
    body = {"registries": {"Registry.Example.com:5000": {"username": "bot", "password": PASSWORD}}}
    response = client.put(path, json=body)
    assert response.status_code == 200, response.text
    shown = {"registries": {"registry.example.com:5000": {"username": "bot"}}}
    assert response.json()["data"] == shown
    assert client.get(path).json()["data"] == shown
    for answer in (response, client.get(path), client.get(f"/v1/projects/{p}")):
        assert PASSWORD not in answer.text
    assert PASSWORD.encode() not in db_bytes(client)
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        opened = pull_credentials.stored(state.box, project_store.get(session, p))
    assert opened["registry.example.com:5000"].password == PASSWORD
    assert client.delete(path).json()["data"] == {"registries": {}}
    assert client.get(path).json()["data"] == {"registries": {}}


def test_bad_bodies_and_permissions(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    path = f"/v1/projects/{p}/registry-pull-credentials"
    for bad, field in (
        ({"registries": {"https://r.example/x": {"username": "u", "password": "p"}}}, "registries"),
        ({"registries": {"r.example": {"username": "u", "password": ""}}}, "password"),
        ({"registries": {"r.example": {"username": "u\nx", "password": "p"}}}, "username"),
        ({"registries": {"r.example": {"username": "u", "password": "p", "x": 1}}}, "x"),
        ({}, "registries"),
    ):
        assert_error(client.put(path, json=bad), 400, field)
    assert_error(client.get("/v1/projects/nope/registry-pull-credentials"), 404)
    reader = {"Authorization": f"Bearer {make_token(client, [Permission.SERVICE_SECRETS_READ])}"}
    assert client.get(path, headers=reader).status_code == 200
    body = {"registries": {"r.example": {"username": "u", "password": "p"}}}
    assert_error(client.put(path, json=body, headers=reader), 403)
    other = make_token(client, [Permission.SERVICE_SECRETS_UPDATE], project="elsewhere")
    assert_error(client.put(path, json=body, headers={"Authorization": f"Bearer {other}"}), 403)
