"""``GET /v1/workers`` (admin token only): the processes that run builds, whether each is
alive (heartbeat within the lease) and the builds it holds now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter

from shipyard.api.deps import DB, Caller, State
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.store import worker_status
from shipyard.store import workers as worker_store
from shipyard.store.builds import now
from shipyard.store.models import Worker

router = APIRouter(prefix="/v1/workers", tags=["workers"])


def worker_out(row: Worker, builds: list[str], lease: timedelta, at: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "hostname": row.hostname,
        "pid": row.pid,
        "startedAt": iso_ms(row.started_at),
        "lastHeartbeatAt": iso_ms(row.last_heartbeat_at),
        "heartbeatAgeS": round(max(0.0, (at - row.last_heartbeat_at).total_seconds()), 3),
        "alive": worker_status.alive(row, lease, at),
        "concurrency": row.concurrency,
        "running": len(builds),
        "builds": builds,
    }


def unregistered_out(worker_id: str, builds: list[str]) -> dict[str, Any]:
    """A worker id that holds builds but has no row (it never registered, or its row was
    removed): listed so no running build is invisible here."""
    return {
        "id": worker_id,
        "hostname": None,
        "pid": None,
        "startedAt": None,
        "lastHeartbeatAt": None,
        "heartbeatAgeS": None,
        "alive": None,
        "concurrency": None,
        "running": len(builds),
        "builds": builds,
    }


@router.get("")
def list_workers(session: DB, caller: Caller, state: State) -> dict[str, Any]:
    caller.require_admin()
    lease = timedelta(seconds=state.settings.lease_s)
    held = worker_status.running_builds(session)
    at = now()
    listed = [
        worker_out(row, held.pop(row.id, []), lease, at) for row in worker_store.listed(session)
    ]
    listed += [unregistered_out(worker_id, builds) for worker_id, builds in sorted(held.items())]
    return envelope({"workers": listed})
