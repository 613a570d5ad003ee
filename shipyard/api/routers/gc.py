"""``POST /v1/gc``: run a garbage collection now (``shipyard gc``). Admin token only: it
deletes images of every project."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from shipyard.api.auth import admin_principal
from shipyard.api.deps import Caller, State
from shipyard.api.schemas.common import envelope
from shipyard.builds.errors import Conflict, Forbidden
from shipyard.gc.collector import Collects

router = APIRouter(tags=["gc"])


@router.post("/v1/gc", summary="Collect garbage: old images, layers, logs")
async def collect(state: State, caller: Caller, dryRun: bool = False) -> dict[str, Any]:
    """Applies the retention policy now (``dryRun``: only says what it would free). Runs
    in the request: the answer is the report."""
    if caller is not admin_principal():
        raise Forbidden("garbage collection needs the admin token")
    executor = state.executor
    if not isinstance(executor, Collects):
        raise Conflict("this server runs no build executor: there is nothing to collect")
    report = await run_in_threadpool(executor.collect_garbage, dryRun)
    return envelope(report.to_json())
