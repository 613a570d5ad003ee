"""``GET …/jobs/{jobId}/runs``: Shipyard builds jobs' images and runs no jobs, so the run
history is always empty, and well-formed (``northflank get job build-logs`` lists runs
first)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shipyard.api.deps import DB, Caller
from shipyard.api.pagination import Page, pagination
from shipyard.api.schemas.common import envelope
from shipyard.builds import permissions
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["jobs"])


@router.get("/jobs/{jobId}/runs", summary="List job runs (always empty)", response_model=None)
def list_job_runs(
    projectId: str, jobId: str, session: DB, caller: Caller, page: Page
) -> dict[str, Any]:
    caller.require(permissions.READ["job"], projectId)
    workload_store.get(session, projectId, "job", jobId)
    return envelope({"runs": []}, pagination(0, page.per_page, None))
