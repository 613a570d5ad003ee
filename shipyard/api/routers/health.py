"""``GET /healthz`` (the process answers; no database) and ``GET /readyz`` (it can do its
work: the database takes writes, the registry answers, builds can run). No authentication:
systemd, load balancers and monitors call them; they reveal no more than "which part fails".
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import State
from shipyard.executors.base import health
from shipyard.health.checks import Check, database_writable

router = APIRouter(tags=["health"])

# A probe that takes longer is a failing check (a hung database must not hang the probe).
CHECK_TIMEOUT_S = 5.0


@router.get("/healthz", summary="Liveness", response_model=None)
async def healthz() -> dict[str, Any]:
    # On the event loop, touching nothing: answers while every worker thread is busy.
    return {"status": "ok"}


async def _bounded(name: str, probe: Any, *args: Any) -> list[Check]:
    try:
        found = await asyncio.wait_for(run_in_threadpool(probe, *args), CHECK_TIMEOUT_S)
    except TimeoutError:
        return [Check(name, False, f"no answer within {CHECK_TIMEOUT_S:g} s")]
    return found if isinstance(found, list) else [found]


@router.get("/readyz", summary="Readiness", response_model=None)
async def readyz(state: State) -> JSONResponse:
    results = await asyncio.gather(
        _bounded("database", database_writable, state.sessions),
        _bounded("executor", health, state.executor),
    )
    checks = [c for found in results for c in found]
    if state.closing.is_set():
        checks.append(Check("shutdown", False, "Shipyard is shutting down"))
    failing = [c.name for c in checks if not c.ok]
    body = {
        "status": "unavailable" if failing else "ready",
        "failing": failing,
        "checks": {c.name: c.to_json() for c in checks},
    }
    return JSONResponse(body, status_code=503 if failing else 200)
