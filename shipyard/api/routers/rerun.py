"""Shipyard's extension: ``POST …/build/{buildId}/rerun`` starts a new build of the same commit
(or bundle) with the same overrides, secrets included, which no client could resend (the API
never returns them). The dashboard's "Re-run" button calls it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from shipyard.api.deps import DB, Caller, State
from shipyard.api.routers.builds import build_out
from shipyard.api.schemas.common import envelope
from shipyard.builds import permissions
from shipyard.builds.rerun import rerun
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["builds"])


def _rerun(
    session: DB,
    state: State,
    caller: Caller,
    project_id: str,
    entity: Literal["service", "job"],
    slug: str,
    build_id: str,
) -> dict[str, Any]:
    caller.require(permissions.DEPLOY_BUILD[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    build = build_store.get(session, workload.id, build_id)
    new = rerun(
        session, state.box, workload, build, max_queued=state.settings.max_queued_builds_per_project
    )
    session.commit()
    state.executor.submit(new.id)
    return envelope(build_out(new))


@router.post(
    "/services/{serviceId}/build/{buildId}/rerun",
    summary="Re-run service build (Shipyard)",
    response_model=None,
)
def rerun_service_build(
    projectId: str, serviceId: str, buildId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _rerun(session, state, caller, projectId, "service", serviceId, buildId)


@router.post(
    "/jobs/{jobId}/build/{buildId}/rerun",
    summary="Re-run job build (Shipyard)",
    response_model=None,
)
def rerun_job_build(
    projectId: str, jobId: str, buildId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _rerun(session, state, caller, projectId, "job", jobId, buildId)
