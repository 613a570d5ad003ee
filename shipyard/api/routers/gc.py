"""``POST /v1/gc``: run a garbage collection now (``shipyard gc``). Admin token only: it
deletes images of every project."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from shipyard.api.auth import admin_principal
from shipyard.api.deps import Caller, State
from shipyard.api.schemas.common import envelope
from shipyard.builds.errors import Conflict, Forbidden
from shipyard.gc.collector import Collects
from shipyard.gc.retention import Policy

router = APIRouter(tags=["gc"])


@router.post("/v1/gc", summary="Collect garbage: old images, layers, logs")
async def collect(
    state: State,
    caller: Caller,
    dryRun: bool = False,
    keepLast: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    keepDays: Annotated[float | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """Applies the retention policy now (``dryRun``: only says what it would free). Runs
    in the request: the answer is the report. ``keepLast`` / ``keepDays`` replace the
    operator's defaults for this run; a service's own ``retention`` still wins."""
    if caller is not admin_principal():
        raise Forbidden("garbage collection needs the admin token")
    executor = state.executor
    if not isinstance(executor, Collects):
        raise Conflict("this server runs no build executor: there is nothing to collect")
    policy = None
    if keepLast is not None or keepDays is not None:
        settings = state.settings
        policy = Policy(
            keep_last=settings.gc_keep_last if keepLast is None else keepLast,
            keep_days=settings.gc_keep_days if keepDays is None else keepDays,
        )
    report = await run_in_threadpool(executor.collect_garbage, dryRun, policy)
    return envelope(report.to_json())
