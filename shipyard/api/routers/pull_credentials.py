"""``/v1/projects/{p}/registry-pull-credentials``: the project's credentials for pulling
private base images from external registries (Shipyard's own; Northflank has no such call).
PUT replaces the whole set; GET shows hosts and usernames, never a password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import StringConstraints

from shipyard.api.deps import DB, Caller, State
from shipyard.api.schemas.common import Strict, envelope
from shipyard.builds import pull_credentials
from shipyard.builds.permissions import Permission
from shipyard.store import projects as project_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["registry pull credentials"])
PATH = "/registry-pull-credentials"
# Either workload kind's secrets permission: the credentials serve every build of the project.
UPDATE = (Permission.SERVICE_SECRETS_UPDATE, Permission.JOB_SECRETS_UPDATE)
READ = (Permission.SERVICE_SECRETS_READ, Permission.JOB_SECRETS_READ)
Field = Annotated[str, StringConstraints(min_length=1, max_length=pull_credentials.MAX_FIELD)]


class Credential(Strict):
    username: Field
    password: Field


class PullCredentialsBody(Strict):
    registries: dict[str, Credential]


def _shown(creds: dict[str, pull_credentials.PullCredential]) -> dict[str, Any]:
    return {"registries": {host: {"username": c.username} for host, c in sorted(creds.items())}}


@router.put(PATH)
def put_pull_credentials(
    projectId: str, body: PullCredentialsBody, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(UPDATE, projectId)
    project = project_store.get(session, projectId)
    wanted = {
        host: pull_credentials.PullCredential(c.username, c.password)
        for host, c in body.registries.items()
    }
    pull_credentials.store(state.box, project, wanted)
    session.commit()
    return envelope(_shown(pull_credentials.stored(state.box, project)))


@router.get(PATH)
def get_pull_credentials(
    projectId: str, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(READ, projectId)
    project = project_store.get(session, projectId)
    return envelope(_shown(pull_credentials.stored(state.box, project)))


@router.delete(PATH)
def delete_pull_credentials(
    projectId: str, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(UPDATE, projectId)
    project = project_store.get(session, projectId)
    pull_credentials.store(state.box, project, {})
    session.commit()
    return envelope({"registries": {}})
