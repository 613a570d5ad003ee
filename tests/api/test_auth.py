"""401 for a missing or unknown token, 403 for a missing permission or another project."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.builds.permissions import Permission
from shipyard.store import tokens as token_store
from shipyard.store.models import Base
from tests.api.test_start_build_rules import assert_error


def make_token(client: TestClient, permissions: list[str], project: str | None = None) -> str:
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        assert isinstance(session, Session)
        _, token = token_store.create(
            session, name="t", permissions=permissions, project_id=project
        )
        session.commit()
    return token


def test_missing_and_unknown_tokens_are_401(client: TestClient, targets: dict[str, str]) -> None:
    p, s = targets["project"], targets["build"]
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
    ):
        assert_error(
            client.post(
                f"/v1/projects/{p}/services/{s}/build", json={"branch": "main"}, headers=headers
            ),
            401,
        )
        assert_error(client.get("/v1/projects", headers=headers), 401)
        assert_error(client.get("/v1/login", headers=headers), 401)


def test_login_answers_200_for_a_valid_token(client: TestClient) -> None:
    assert client.get("/v1/login").status_code == 200


def test_permission_missing_is_403(client: TestClient, targets: dict[str, str]) -> None:
    p, s, j = targets["project"], targets["build"], targets["job"]
    reader = make_token(client, [Permission.SERVICES_READ, Permission.JOBS_READ])
    h = {"Authorization": f"Bearer {reader}"}
    error = assert_error(
        client.post(f"/v1/projects/{p}/services/{s}/build", json={"branch": "main"}, headers=h), 403
    )
    assert "Deploy Build" in error["message"]
    assert_error(client.post(f"/v1/projects/{p}/jobs/{j}/build", json={}, headers=h), 403)
    assert client.get(f"/v1/projects/{p}/services/{s}/build", headers=h).status_code == 200
    assert_error(client.post("/v1/projects", json={"name": "x"}, headers=h), 403)
    # A service deployer cannot start job builds.
    deployer = make_token(client, [Permission.SERVICES_DEPLOY_BUILD])
    h = {"Authorization": f"Bearer {deployer}"}
    assert (
        client.post(
            f"/v1/projects/{p}/services/{s}/build", json={"branch": "main"}, headers=h
        ).status_code
        == 200
    )
    assert_error(client.post(f"/v1/projects/{p}/jobs/{j}/build", json={}, headers=h), 403)


def test_project_scope(client: TestClient, factory: object, targets: dict[str, str]) -> None:
    p, s = targets["project"], targets["build"]
    other = client.post("/v1/projects", json={"name": "Other"}).json()["data"]["id"]
    scoped = make_token(client, [p.value for p in Permission], project=other)
    h = {"Authorization": f"Bearer {scoped}"}
    assert_error(
        client.post(f"/v1/projects/{p}/services/{s}/build", json={"branch": "main"}, headers=h), 403
    )
    assert_error(client.get(f"/v1/projects/{p}/services/{s}/build", headers=h), 403)
    assert_error(client.post("/v1/projects", json={"name": "new"}, headers=h), 403)
    listed = client.get("/v1/projects", headers=h).json()["data"]["projects"]
    assert [x["id"] for x in listed] == [other]
    mine = client.post(
        f"/v1/projects/{other}/services/build",
        json={"name": "svc", "vcsData": {"projectUrl": "file:///x"}},
        headers=h,
    )
    assert mine.status_code == 200, mine.text


def _stored_bytes(client: TestClient) -> bytes:
    """Everything the database holds: SQLite's files (the write-ahead log too: a fresh row is
    there, not yet in the main file), or every row of every table."""
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    if state.settings.database_url is None:
        return b"".join(p.read_bytes() for p in state.settings.data_dir.glob("shipyard.db*"))
    with state.sessions() as session:
        rows = [
            row for table in Base.metadata.sorted_tables for row in session.execute(select(table))
        ]
    return repr(rows).encode()


def test_tokens_are_stored_hashed(client: TestClient) -> None:
    token = make_token(client, [Permission.PROJECTS_READ])
    stored = _stored_bytes(client)
    assert token_store.hash_token(token).encode() in stored  # the row is in what was read
    assert token.encode() not in stored
    assert (
        client.get("/v1/projects", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
