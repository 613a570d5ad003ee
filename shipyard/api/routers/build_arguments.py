"""Stored build arguments, build files and secret mounts of a service or job (encrypted at
rest; returned only to callers with the secrets permission), and their details view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from shipyard.api.deps import DB, Caller, State
from shipyard.api.schemas.builds import SecretOverrides
from shipyard.api.schemas.common import envelope
from shipyard.api.secret_bodies import secrets_of
from shipyard.builds import permissions
from shipyard.builds import service as build_service
from shipyard.builds.request import Overrides
from shipyard.builds.secret_files import SecretFile
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["build arguments"])

Entity = Literal["service", "job"]
Show = Annotated[Literal["this", "inherited", "all"], Query()]
# js-client: "If templated secrets should be replaced with their inferred value rather than
# returned as template strings." Build files and secret mounts are what Shipyard templates.
ReplaceTemplated = Annotated[bool, Query(alias="replaceTemplatedValues")]


class UpdateBuildArguments(SecretOverrides):
    """buildArguments, buildFiles and dockerSecretMounts: the complete new set."""


def _files(files: Mapping[str, SecretFile]) -> dict[str, dict[str, str]]:
    return {path: file.to_json() for path, file in files.items()}


def _stored(
    session: DB, state: State, caller: Caller, project_id: str, entity: Entity, slug: str
) -> Overrides:
    caller.require(permissions.SECRETS_READ[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    return build_service.stored_secrets(state.box, workload)


def _get(
    session: DB,
    state: State,
    caller: Caller,
    project_id: str,
    entity: Entity,
    slug: str,
    show: str,
    replace_templated: bool,
) -> dict[str, Any]:
    stored = _stored(session, state, caller, project_id, entity, slug)
    if show == "inherited":  # Shipyard has no secret groups to inherit from
        return envelope({"buildArguments": {}, "buildFiles": {}, "dockerSecretMounts": {}})
    if replace_templated:
        stored = stored.templated()
    # dockerSecretMounts is not in Northflank's answer; returned so that a GET then POST of
    # the complete set (the update replaces it) does not drop the mounts.
    return envelope(
        {
            "buildArguments": dict(stored.build_arguments),
            "buildFiles": _files(stored.build_files),
            "dockerSecretMounts": _files(stored.secret_mounts),
        }
    )


def _details(
    session: DB, state: State, caller: Caller, project_id: str, entity: Entity, slug: str
) -> dict[str, Any]:
    """js-client's ``buildArgumentDetails``: each key with its value and where it comes
    from. Everything is the workload's own (no secret groups), so nothing is inherited or
    overridden: ``inheritedFrom`` is absent and ``overriding`` empty."""
    stored = _stored(session, state, caller, project_id, entity, slug)
    return envelope(
        {
            "buildArguments": {
                name: {"value": value, "overriding": []}
                for name, value in stored.build_arguments.items()
            },
            "buildFiles": {
                path: {"value": file.to_json(), "overriding": []}
                for path, file in stored.build_files.items()
            },
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
    secrets = secrets_of(body.buildArguments, body.buildFiles, body.dockerSecretMounts)
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
    projectId: str,
    serviceId: str,
    session: DB,
    state: State,
    caller: Caller,
    show: Show = "all",
    replace_templated: ReplaceTemplated = False,
) -> dict[str, Any]:
    return _get(session, state, caller, projectId, "service", serviceId, show, replace_templated)


@router.get("/jobs/{jobId}/build-arguments", summary="Get job build arguments", response_model=None)
def get_job_build_arguments(
    projectId: str,
    jobId: str,
    session: DB,
    state: State,
    caller: Caller,
    show: Show = "all",
    replace_templated: ReplaceTemplated = False,
) -> dict[str, Any]:
    return _get(session, state, caller, projectId, "job", jobId, show, replace_templated)


@router.get(
    "/services/{serviceId}/build-arguments/details",
    summary="Get service build argument details",
    response_model=None,
)
def get_service_build_argument_details(
    projectId: str, serviceId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _details(session, state, caller, projectId, "service", serviceId)


@router.get(
    "/jobs/{jobId}/build-arguments/details",
    summary="Get job build argument details",
    response_model=None,
)
def get_job_build_argument_details(
    projectId: str, jobId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _details(session, state, caller, projectId, "job", jobId)


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
