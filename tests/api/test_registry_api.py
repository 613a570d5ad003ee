"""``GET /v1/registry/token`` and ``GET /v1/projects/{p}/registry-credentials`` (no registry
here: the tokens are checked against the issuer's certificate; tests/registryauth/
test_registry_live.py shows a real registry accepting them)."""

from __future__ import annotations

import base64
from typing import Any

import jwt
from fastapi.testclient import TestClient

from shipyard.registryauth import RegistryCredentials, credentials
from shipyard.settings import Settings
from shipyard.store import tokens as token_store
from shipyard.store.db import make_engine, make_sessionmaker
from tests.conftest import Factory

READ = "Project > Services > General > Read"
DEPLOY = "Project > Services > Deployment > Deploy Build"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token_claims(client: TestClient, password: str, *scopes: str) -> dict[str, Any]:
    response = client.get(
        "/v1/registry/token",
        params={"service": "shipyard-registry", "scope": list(scopes), "account": "x"},
        headers=basic("anyone", password),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    claims: dict[str, Any] = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == "shipyard-registry" and claims["iss"] == "shipyard"
    return claims


def access(claims: dict[str, Any]) -> dict[str, list[str]]:
    return {a["name"]: a["actions"] for a in claims["access"]}


def api_token(settings: Settings, permissions: list[str], project: str | None) -> str:
    with make_sessionmaker(make_engine(settings.resolved_database_url))() as session:
        _, token = token_store.create(
            session, name="t", permissions=permissions, project_id=project
        )
        session.commit()
    return token


def test_build_credential_gets_the_intersection(client: TestClient, settings: Settings) -> None:
    _, password = credentials(settings).issue_build_credential("a", "b-1", 300)
    claims = token_claims(
        client,
        password,
        "repository:a/web:pull,push",
        "repository:b/web:pull,push",
        "repository:shared/base:pull,push repository:a/web:delete",
    )
    assert access(claims) == {"a/web": ["pull", "push"], "shared/base": ["pull"]}
    assert claims["sub"] == "build:a/b-1"


def test_admin_and_api_tokens(client: TestClient, settings: Settings) -> None:
    assert settings.admin_token is not None
    admin = settings.admin_token.get_secret_value()
    assert access(token_claims(client, admin, "repository:b/web:pull,push,delete")) == {
        "b/web": ["pull", "push"]
    }
    reader = api_token(settings, [READ], "a")
    assert access(token_claims(client, reader, "repository:a/web:pull,push")) == {"a/web": ["pull"]}
    deployer = api_token(settings, [READ, DEPLOY], "a")
    claims = token_claims(client, deployer, "repository:a/web:pull,push", "repository:b/x:pull")
    assert access(claims) == {"a/web": ["pull", "push"]}


def test_wrong_or_missing_credentials_are_401_with_a_basic_challenge(client: TestClient) -> None:
    client.headers.pop("Authorization")
    foreign = RegistryCredentials("another-secret-key").issue_build_credential("a", "b-1", 300)
    cases: list[dict[str, str]] = [
        {},
        basic("build", "sy_unknown"),
        basic("build", "not-a-token"),
        basic(*foreign),
        {"Authorization": "Bearer sy_whatever"},
        {"Authorization": "Basic !!!"},
    ]
    for headers in cases:
        response = client.get("/v1/registry/token", params={"scope": "x"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Basic ")


def test_unknown_service_is_refused(client: TestClient, settings: Settings) -> None:
    _, password = credentials(settings).issue_build_credential("a", "b-1", 300)
    response = client.get(
        "/v1/registry/token", params={"service": "other"}, headers=basic("u", password)
    )
    assert response.status_code == 400


def test_pull_credentials_endpoint(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    project = factory.project("Demo")
    data = factory.ok("GET", f"/v1/projects/{project}/registry-credentials")
    assert data["registry"] == f"127.0.0.1:{settings.registry_port}"
    assert data["username"] == "pull" and data["expiresAt"].endswith("Z")
    claims = token_claims(
        client, data["password"], f"repository:{project}/web:pull,push", "repository:other/x:pull"
    )
    assert access(claims) == {f"{project}/web": ["pull"]}
    assert client.get("/v1/projects/nope/registry-credentials").status_code == 404


def test_pull_credentials_need_read_on_that_project(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    project = factory.project("Demo")
    factory.project("Other")
    for permissions, scope, status in [
        ([READ], project, 200),
        (["Project > Jobs > General > Read"], project, 200),
        ([DEPLOY], project, 403),
        ([READ], "other", 403),
        ([READ], None, 200),
    ]:
        token = api_token(settings, permissions, scope)
        response = client.get(
            f"/v1/projects/{project}/registry-credentials",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == status, (permissions, scope, response.text)
