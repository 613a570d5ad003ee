"""Stored build arguments, build files and secret mounts of a service or job (encrypted at
rest; returned only to callers with the secrets permission)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from shipyard.api.deps import DB, Caller, State
from shipyard.api.routers.builds import to_overrides
from shipyard.api.schemas.builds import SecretOverrides
from shipyard.api.schemas.common import envelope
from shipyard.builds import permissions
from shipyard.builds import service as build_service
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["build arguments"])

Entity = Literal["service", "job"]
Show = Annotated[Literal["this", "inherited", "all"], Query()]


class UpdateBuildArguments(SecretOverrides):
    """buildArguments, buildFiles and dockerSecretMounts: the complete new set."""


def _files(files: dict[str, bytes]) -> dict[str, dict[str, str]]:
    return {
        p: {"data": base64.b64encode(v).decode(), "encoding": "base64"} for p, v in files.items()
    }


def _get(
    session: DB, state: State, caller: Caller, project_id: str, entity: Entity, slug: str, show: str
) -> dict[str, Any]:
    caller.require(permissions.SECRETS_READ[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    if show == "inherited":  # Shipyard has no secret groups to inherit from
        return envelope({"buildArguments": {}, "buildFiles": {}})
    stored = build_service.stored_secrets(state.box, workload)
    return envelope(
        {
            "buildArguments": dict(stored.build_arguments),
            "buildFiles": _files(dict(stored.build_files)),
        }
    )


def _update(
    session: DB,
    state: State,
    caller: Caller,
    project_id: str,
    entity: Entity,
    slug: str,
    body: UpdateBuildArguments,
) -> dict[str, Any]:
    caller.require(permissions.SECRETS_UPDATE[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    secrets = to_overrides(body)
    build_service.store_secrets(state.box, workload, secrets)
    session.commit()
    return envelope(
        {
            "buildArguments": sorted(secrets.build_arguments),
            "buildFiles": sorted(secrets.build_files),
            "dockerSecretMounts": sorted(secrets.secret_mounts),
        }
    )


@router.get(
    "/services/{serviceId}/build-arguments",
    summary="Get service build arguments",
    response_model=None,
)
def get_service_build_arguments(
    projectId: str, serviceId: str, session: DB, state: State, caller: Caller, show: Show = "all"
) -> dict[str, Any]:
    return _get(session, state, caller, projectId, "service", serviceId, show)


@router.get("/jobs/{jobId}/build-arguments", summary="Get job build arguments", response_model=None)
def get_job_build_arguments(
    projectId: str, jobId: str, session: DB, state: State, caller: Caller, show: Show = "all"
) -> dict[str, Any]:
    return _get(session, state, caller, projectId, "job", jobId, show)


@router.post(
    "/services/{serviceId}/build-arguments",
    summary="Update service build arguments",
    response_model=None,
)
def update_service_build_arguments(
    projectId: str,
    serviceId: str,
    body: UpdateBuildArguments,
    session: DB,
    state: State,
    caller: Caller,
) -> dict[str, Any]:
    return _update(session, state, caller, projectId, "service", serviceId, body)


@router.post(
    "/jobs/{jobId}/build-arguments", summary="Update job build arguments", response_model=None
)
def update_job_build_arguments(
    projectId: str,
    jobId: str,
    body: UpdateBuildArguments,
    session: DB,
    state: State,
    caller: Caller,
) -> dict[str, Any]:
    return _update(session, state, caller, projectId, "job", jobId, body)
