"""Editing and deleting services and jobs: PUT (create-or-update), PATCH, build-options,
build-source, DELETE, and resetting a service's build cache.

Builds read the workload's settings when they run (``builds.workload_settings``), so an edit
is seen by the next build that starts; builds already running keep what they started with.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from shipyard.api.deps import DB, AppState, Caller, State
from shipyard.api.routers.builds import to_overrides
from shipyard.api.routers.workloads import _create, workload_out
from shipyard.api.schemas.builds import SecretOverrides
from shipyard.api.schemas.common import envelope
from shipyard.api.schemas.resources import (
    BuildOptions,
    BuildSource,
    CreateWorkload,
    PatchWorkload,
)
from shipyard.builds import lifecycle, permissions, workload_settings
from shipyard.builds.errors import Conflict
from shipyard.builds.ids import slugify
from shipyard.builds.request import Overrides, WorkloadKind
from shipyard.builds.service import store_repository_url, store_secrets, stored_secrets
from shipyard.executors import base as executors
from shipyard.store import projects as project_store
from shipyard.store import workloads as workload_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Workload

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["services", "jobs"])

Entity = Literal["service", "job"]
_SEGMENT = {"service": "services", "job": "jobs"}
_KIND_LABEL = {
    WorkloadKind.COMBINED: "combined service",
    WorkloadKind.BUILD: "build service",
    WorkloadKind.MANUAL_JOB: "manual job",
    WorkloadKind.CRON_JOB: "cron job",
}


def _same_kind(workload: Workload, kind: WorkloadKind) -> None:
    if workload.kind != kind.value:
        raise Conflict(
            f"{workload.entity} '{workload.slug}' is a {_KIND_LABEL[WorkloadKind(workload.kind)]}, "
            f"not a {_KIND_LABEL[kind]}",
            {"serviceType" if workload.entity == "service" else "jobType": workload.kind},
        )


def _store_secret_parts(box: SecretBox, workload: Workload, given: dict[str, Any]) -> None:
    """Replace the stored build arguments, build files or secret mounts that ``given`` names
    (keys of ``workload_settings.SECRET_KEYS``); the others stay."""
    if not given:
        return
    parsed = to_overrides(SecretOverrides.model_validate(given))
    stored = stored_secrets(box, workload)
    store_secrets(
        box,
        workload,
        Overrides(
            build_arguments=parsed.build_arguments
            if "buildArguments" in given
            else stored.build_arguments,
            build_files=parsed.build_files if "buildFiles" in given else stored.build_files,
            secret_mounts=parsed.secret_mounts
            if "dockerSecretMounts" in given
            else stored.secret_mounts,
        ),
    )


def _split_secrets(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    secrets = {k: body.pop(k) for k in workload_settings.SECRET_KEYS if k in body}
    return body, secrets


def _edit(
    session: Session,
    box: SecretBox,
    workload: Workload,
    patch: dict[str, Any],
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Merge ``patch`` (a body without name; ``replace``: a whole new body) into the
    workload's settings, check the result with the create body's rules, and store it."""
    patch, secrets = _split_secrets(dict(patch))
    description_given = "description" in patch
    description = patch.pop("description", None)
    patch.pop("name", None)
    merged = patch if replace else workload_settings.merge(workload.spec, patch)
    # The merged result obeys every rule a create body does (pydantic's 400 names the field).
    CreateWorkload.model_validate({**merged, "name": workload.name})
    new_url = (patch.get("vcsData") or {}).get("projectUrl")
    if new_url is not None:
        merged["vcsData"]["projectUrl"] = store_repository_url(box, workload, new_url)
    workload_settings.apply(workload, merged)
    if description_given or replace:
        workload.description = description
    _store_secret_parts(box, workload, secrets)
    session.commit()
    return envelope(workload_out(workload))


def _put(
    session: Session,
    state: AppState,
    caller: Caller,
    project_id: str,
    entity: Entity,
    kind: WorkloadKind,
    body: CreateWorkload,
) -> dict[str, Any]:
    caller.require(permissions.CREATE_OR_UPDATE[entity], project_id)
    project_store.get(session, project_id)
    existing = workload_store.find(session, project_id, entity, slugify(body.name))
    if existing is None:
        return _create(session, state.box, caller, project_id, entity, kind, body)
    _same_kind(existing, kind)
    dumped = body.model_dump(exclude_none=True)
    # A PUT replaces the settings; stored build arguments are replaced only when given.
    return _edit(session, state.box, existing, dumped, replace=True)


def _patch(
    session: Session,
    state: AppState,
    caller: Caller,
    project_id: str,
    entity: Entity,
    kind: WorkloadKind,
    slug: str,
    body: PatchWorkload,
) -> dict[str, Any]:
    caller.require(permissions.UPDATE[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    _same_kind(workload, kind)
    return _edit(session, state.box, workload, body.model_dump(exclude_unset=True))


def _register_put_patch(entity: Entity, kind: WorkloadKind, path: str) -> None:
    label = _KIND_LABEL[kind]
    id_name = "serviceId" if entity == "service" else "jobId"

    def put(
        projectId: str, body: CreateWorkload, session: DB, state: State, caller: Caller
    ) -> dict[str, Any]:
        return _put(session, state, caller, projectId, entity, kind, body)

    def patch(
        projectId: str,
        workloadId: str,
        body: PatchWorkload,
        session: DB,
        state: State,
        caller: Caller,
    ) -> dict[str, Any]:
        return _patch(session, state, caller, projectId, entity, kind, workloadId, body)

    router.add_api_route(
        f"/{path}",
        put,
        methods=["PUT"],
        summary=f"Create or update {label}",
        response_model=None,
        name=f"put_{kind.value}_{entity}",
    )
    router.add_api_route(
        f"/{path}/{{workloadId}}",
        patch,
        methods=["PATCH"],
        summary=f"Patch {label} ({id_name})",
        response_model=None,
        name=f"patch_{kind.value}_{entity}",
    )


_register_put_patch("service", WorkloadKind.COMBINED, "services/combined")
_register_put_patch("service", WorkloadKind.BUILD, "services/build")
_register_put_patch("job", WorkloadKind.MANUAL_JOB, "jobs/manual")
_register_put_patch("job", WorkloadKind.CRON_JOB, "jobs/cron")


def _build_options(
    session: Session,
    caller: Caller,
    state: AppState,
    project_id: str,
    entity: Entity,
    slug: str,
    body: BuildOptions,
) -> dict[str, Any]:
    caller.require(permissions.UPDATE[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    fields = body.model_dump(exclude_unset=True)
    patch: dict[str, Any] = {}
    if "dockerfile" in fields:
        patch["buildSettings"] = {"dockerfile": fields.pop("dockerfile")}
    if fields:
        # The rest are buildConfiguration's fields (Northflank sends them flat here).
        patch["buildConfiguration"] = fields
    _edit(session, state.box, workload, patch)
    return envelope({})


def _build_source(
    session: Session,
    caller: Caller,
    state: AppState,
    project_id: str,
    entity: Entity,
    slug: str,
    body: BuildSource,
) -> dict[str, Any]:
    caller.require(permissions.UPDATE[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    _edit(session, state.box, workload, {"vcsData": body.model_dump(exclude_unset=True)})
    return envelope({})


def _delete(
    session: Session, caller: Caller, state: AppState, project_id: str, entity: Entity, slug: str
) -> dict[str, Any]:
    caller.require(permissions.DELETE[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    running = lifecycle.delete_workload(session, workload)
    session.commit()
    for build_id in running:
        state.executor.abort(build_id)
    return envelope({})


DeleteChildren = Annotated[
    bool, Query(description="Accepted; a Shipyard service has no volumes to delete")
]


def _register_entity_routes(entity: Entity) -> None:
    segment = _SEGMENT[entity]

    def options(
        projectId: str, entityId: str, body: BuildOptions, session: DB, state: State, caller: Caller
    ) -> dict[str, Any]:
        return _build_options(session, caller, state, projectId, entity, entityId, body)

    def source(
        projectId: str, entityId: str, body: BuildSource, session: DB, state: State, caller: Caller
    ) -> dict[str, Any]:
        return _build_source(session, caller, state, projectId, entity, entityId, body)

    def remove(
        projectId: str,
        entityId: str,
        session: DB,
        state: State,
        caller: Caller,
        delete_child_objects: DeleteChildren = False,
    ) -> dict[str, Any]:
        return _delete(session, caller, state, projectId, entity, entityId)

    for suffix, handler, method, summary in (
        ("build-options", options, "POST", "Update {entity} build options"),
        ("build-source", source, "POST", "Update {entity} build source"),
        ("", remove, "DELETE", "Delete {entity}"),
    ):
        router.add_api_route(
            f"/{segment}/{{entityId}}" + (f"/{suffix}" if suffix else ""),
            handler,
            methods=[method],
            summary=summary.format(entity=entity),
            response_model=None,
            name=f"{method.lower()}_{entity}_{suffix or 'self'}",
        )


_register_entity_routes("service")
_register_entity_routes("job")


@router.delete(
    "/services/{serviceId}/build-cache", summary="Reset service build cache", response_model=None
)
def reset_service_build_cache(
    projectId: str, serviceId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    """The next build of the service reuses no earlier image, and the executor drops the
    project's layer cache (``ResourceHooks.reset_cache``)."""
    caller.require(permissions.UPDATE["service"], projectId)
    workload = workload_store.get(session, projectId, "service", serviceId)
    lifecycle.reset_cache(session, workload)
    session.commit()
    executors.reset_cache(state.executor, projectId, workload.id)
    return envelope({})
