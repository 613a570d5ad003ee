"""GET /v1/tokens and DELETE /v1/tokens/{id}: the admin token only; never a token or hash."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds.permissions import ALL, Permission
from tests.api.test_auth import make_token
from tests.api.test_start_build_rules import assert_error


def test_list_shows_tokens_but_never_a_token_or_its_hash(client: TestClient) -> None:
    deployer = make_token(client, [Permission.SERVICES_DEPLOY_BUILD], project="demo")
    admin_like = make_token(client, [p.value for p in ALL])
    response = client.get("/v1/tokens")
    assert response.status_code == 200, response.text
    tokens = response.json()["data"]["tokens"]
    assert [t["projectId"] for t in tokens] == ["demo", None]
    assert tokens[0] == {
        "id": tokens[0]["id"],
        "name": "t",
        "projectId": "demo",
        "permissions": [Permission.SERVICES_DEPLOY_BUILD.value],
        "createdAt": tokens[0]["createdAt"],
    }
    for secret in (deployer, admin_like, deployer[3:], admin_like[3:]):
        assert secret not in response.text
    assert "hash" not in response.text.lower()


def test_revoked_token_stops_working_at_once(client: TestClient) -> None:
    token = make_token(client, [p.value for p in ALL])
    own = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/projects", headers=own).status_code == 200
    (row,) = client.get("/v1/tokens").json()["data"]["tokens"]
    response = client.delete(f"/v1/tokens/{row['id']}")
    assert response.status_code == 200 and response.json()["data"]["revoked"] is True
    assert_error(client.get("/v1/projects", headers=own), 401)
    assert client.get("/v1/tokens").json()["data"]["tokens"] == []
    assert_error(client.delete(f"/v1/tokens/{row['id']}"), 404)
    assert_error(client.delete("/v1/tokens/nope"), 400)


def test_only_the_admin_token_manages_tokens(client: TestClient) -> None:
    # Every permission is still not the admin: a token must not revoke the others (or list them).
    everything = {"Authorization": f"Bearer {make_token(client, [p.value for p in ALL])}"}
    assert_error(client.get("/v1/tokens", headers=everything), 403)
    assert_error(client.delete("/v1/tokens/1", headers=everything), 403)
    assert_error(client.get("/v1/tokens", headers={"Authorization": "Bearer nope"}), 401)
