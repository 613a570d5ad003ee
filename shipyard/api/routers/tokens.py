"""API tokens, for the admin token only: list them (never a token or its hash) and revoke one.

Tokens are created on the server's machine (``shipyard tokens create``), which prints the
token once; these two calls are what an operator needs afterwards, from anywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from shipyard.api.deps import DB, Caller
from shipyard.api.pagination import MAX_DB_INT
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds.errors import NotFound
from shipyard.store import tokens as token_store
from shipyard.store.models import ApiToken

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def token_out(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "projectId": row.project_id,
        "permissions": list(row.permissions),
        "createdAt": iso_ms(row.created_at),
    }


@router.get("")
def list_tokens(session: DB, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    return envelope({"tokens": [token_out(row) for row in token_store.all_tokens(session)]})


@router.delete("/{tokenId}")
def revoke_token(
    tokenId: Annotated[int, Path(ge=1, le=MAX_DB_INT)], session: DB, caller: Caller
) -> dict[str, Any]:
    caller.require_admin()
    if not token_store.revoke(session, tokenId):
        raise NotFound(f"no API token with id {tokenId}", slug="token-not-found")
    session.commit()
    return envelope({"id": tokenId, "revoked": True})
