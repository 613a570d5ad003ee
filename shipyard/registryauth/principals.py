"""Who asks the token endpoint, as a ``Grant``: API tokens and Shipyard's own credentials."""

from __future__ import annotations

from collections.abc import Iterable

from shipyard.builds.permissions import Permission
from shipyard.registryauth.credentials import Credential
from shipyard.registryauth.scopes import Grant, Projects

# Pulling an image reads a build's result; pushing one is making a build.
PULL_PERMISSIONS = frozenset({Permission.SERVICES_READ, Permission.JOBS_READ})
PUSH_PERMISSIONS = frozenset({Permission.SERVICES_DEPLOY_BUILD, Permission.JOBS_DEPLOY_BUILD})


def api_token_grant(name: str, permissions: Iterable[str], project_id: str | None) -> Grant:
    """An API token: its project (every project when unscoped, as the admin token is)."""
    held = frozenset(permissions)
    projects: Projects = "all" if project_id is None else frozenset({project_id})
    can_pull = bool(held & PULL_PERMISSIONS)
    return Grant(
        subject=f"token:{name}",
        pull=projects if can_pull else frozenset(),
        push=projects if held & PUSH_PERMISSIONS else frozenset(),
        pull_shared=can_pull,
    )


def credential_grant(credential: Credential) -> Grant:
    if credential.kind == "internal":
        return Grant(subject="shipyard", internal=True)
    assert credential.project_id is not None
    own = frozenset({credential.project_id})
    if credential.kind == "build":
        subject = f"build:{credential.project_id}/{credential.build_id}"
        return Grant(subject=subject, pull=own, push=own, pull_shared=True)
    return Grant(subject=f"pull:{credential.project_id}", pull=own, pull_shared=True)
