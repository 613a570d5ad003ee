"""Hostile-tenant helpers: a token scoped to one project, with every permission."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shipyard.builds.permissions import ALL
from shipyard.store import tokens as token_store


def project_token(client: TestClient, project: str) -> str:
    """A token of ``project`` holding every permission (the most a tenant can have)."""
    sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        _, token = token_store.create(
            session, name="tenant", permissions=[p.value for p in ALL], project_id=project
        )
        session.commit()
    return token
