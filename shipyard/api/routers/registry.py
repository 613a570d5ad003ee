"""The embedded registry's token endpoint (distribution token auth) and users' pull
credentials. The rules live in ``shipyard.registryauth``; this is the HTTP side only."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from shipyard.api.auth import authenticate
from shipyard.api.deps import DB, Caller, State
from shipyard.api.errors import error_body
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds.errors import Conflict, InvalidRequest, Unauthenticated
from shipyard.builds.permissions import Permission
from shipyard.registryauth import RegistryAuth
from shipyard.registryauth.principals import api_token_grant
from shipyard.store import projects as project_store

router = APIRouter(tags=["registry"])

NO_STORE = {"Cache-Control": "no-store"}  # both answers carry credentials
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Shipyard registry", charset="UTF-8"'}


async def registry_auth(request: Request) -> RegistryAuth:
    auth: RegistryAuth = request.app.state.registry_auth
    return auth


Auth = Annotated[RegistryAuth, Depends(registry_auth)]


def _basic_password(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _username, sep, password = decoded.partition(":")
    return password if sep and password else None


def _refuse(message: str) -> JSONResponse:
    return JSONResponse(
        error_body(401, message, slug="unauthenticated"),
        status_code=401,
        headers={**CHALLENGE, **NO_STORE},
    )


@router.get("/v1/registry/token", summary="Token for the embedded registry", response_model=None)
def registry_token(
    request: Request,
    session: DB,
    state: State,
    auth: Auth,
    service: str | None = None,
    scope: Annotated[list[str] | None, Query()] = None,
    account: str | None = None,  # sent by clients (the user name); the password decides
) -> Response:
    """HTTP Basic: any username; the password is an API token or a registry credential.
    Grants the requested scopes as far as the caller may have them, silently narrowed."""
    if service is not None and service != auth.issuer.service:
        raise InvalidRequest(f"unknown registry service {service!r}", {"service": "unknown"})
    password = _basic_password(request.headers.get("authorization"))
    if password is None:
        return _refuse("registry credentials required (HTTP Basic)")
    grant = auth.credential_grant(password)
    if grant is None:
        try:
            principal = authenticate(session, password, state.admin_token)
        except Unauthenticated:
            return _refuse("unknown or expired registry credentials")
        grant = api_token_grant(principal.name, principal.permissions, principal.project_id)
    return JSONResponse(auth.token(grant, scope or []).response(), headers=NO_STORE)


@router.get(
    "/v1/projects/{projectId}/registry-credentials",
    summary="Pull credentials for the project's images",
    response_model=None,
)
def registry_credentials(
    projectId: str, response: Response, session: DB, state: State, caller: Caller, auth: Auth
) -> dict[str, Any]:
    # Reading builds needs the services or the jobs read permission; either shows images.
    read = (
        Permission.SERVICES_READ
        if Permission.SERVICES_READ in caller.permissions
        else Permission.JOBS_READ
    )
    caller.require(read, projectId)
    project_store.get(session, projectId)
    settings = state.settings
    if settings.registry:
        raise Conflict("images go to an external registry; ask its operator for credentials")
    username, password, expires_at = auth.credentials.issue_pull_credential(
        projectId, settings.registry_pull_credential_ttl_s
    )
    response.headers.update(NO_STORE)
    return envelope(
        {
            "registry": f"127.0.0.1:{settings.registry_port}",
            "username": username,
            "password": password,
            "expiresAt": iso_ms(datetime.fromtimestamp(expires_at, UTC)),
        }
    )
