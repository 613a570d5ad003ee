"""``GET /v1/login``: the Northflank CLI checks a token with it before saving a context."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shipyard.api.deps import Caller
from shipyard.api.schemas.common import envelope

router = APIRouter(tags=["auth"])


@router.get("/v1/login", summary="Check a token", response_model=None)
def login(caller: Caller) -> dict[str, Any]:
    return envelope({"name": caller.name, "projectId": caller.project_id, "valid": True})
