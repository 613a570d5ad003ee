"""Services (combined, build) and jobs (manual, cron): create, list, get."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from shipyard.api.deps import DB, Caller, State
from shipyard.api.pagination import Page, encode_cursor, offset_of, pagination
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.api.schemas.resources import SECRET_FIELDS, CreateWorkload
from shipyard.api.secret_bodies import secrets_of
from shipyard.builds import permissions, workload_settings
from shipyard.builds.errors import InvalidRequest
from shipyard.builds.ids import slugify
from shipyard.builds.request import WorkloadKind
from shipyard.builds.service import store_repository_url, store_secrets
from shipyard.store import projects as project_store
from shipyard.store import workloads as workload_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Workload

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["services", "jobs"])

Entity = Literal["service", "job"]


def workload_out(workload: Workload) -> dict[str, Any]:
    # Secrets are never echoed, also from rows written before they were sealed (migration 0005).
    shown = {k: v for k, v in workload.spec.items() if k not in SECRET_FIELDS}
    return {
        **shown,
        "id": workload.slug,
        "projectId": workload.project_id,
        "name": workload.name,
        **({"description": workload.description} if workload.description is not None else {}),
        "serviceType" if workload.entity == "service" else "jobType": workload.kind,
        "createdAt": iso_ms(workload.created_at),
    }


def _create(
    session: DB,
    box: SecretBox,
    caller: Caller,
    project_id: str,
    entity: Entity,
    kind: WorkloadKind,
    body: CreateWorkload,
) -> dict[str, Any]:
    caller.require(permissions.CREATE[entity], project_id)
    project_store.get(session, project_id)
    slug = slugify(body.name)
    if not slug:
        raise InvalidRequest("name must contain at least one letter or digit", {"name": "invalid"})
    # Decoded (and refused) before anything is written.
    secrets = secrets_of(body.buildArguments, body.buildFiles, body.dockerSecretMounts)
    spec = body.model_dump(exclude={"name", "description", *SECRET_FIELDS}, exclude_none=True)
    workload = Workload(
        project_id=project_id,
        entity=entity,
        slug=slug,
        kind=kind.value,
        name=body.name,
        description=body.description,
    )
    workload_settings.apply(workload, spec)
    spec["vcsData"]["projectUrl"] = store_repository_url(box, workload, body.vcsData.projectUrl)
    workload_store.create(session, workload)
    # Create-time secrets are the workload's stored set, as POST …/build-arguments writes it.
    if secrets.build_arguments or secrets.build_files or secrets.secret_mounts:
        store_secrets(box, workload, secrets)
    session.commit()
    return envelope(workload_out(workload))


def _list(
    session: DB, caller: Caller, project_id: str, entity: Entity, page: Page
) -> dict[str, Any]:
    caller.require(permissions.READ[entity], project_id)
    project_store.get(session, project_id)
    offset = offset_of(page)
    rows = workload_store.list_page(
        session, project_id, entity, offset=offset, limit=page.per_page + 1
    )
    key = "services" if entity == "service" else "jobs"
    data = {key: [workload_out(w) for w in rows[: page.per_page]]}
    return envelope(
        data, pagination(len(rows), page.per_page, encode_cursor({"o": offset + page.per_page}))
    )


@router.post("/services/combined", summary="Create combined service", response_model=None)
def create_combined_service(
    projectId: str, body: CreateWorkload, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _create(session, state.box, caller, projectId, "service", WorkloadKind.COMBINED, body)


@router.post("/services/build", summary="Create build service", response_model=None)
def create_build_service(
    projectId: str, body: CreateWorkload, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _create(session, state.box, caller, projectId, "service", WorkloadKind.BUILD, body)


@router.post("/jobs/manual", summary="Create manual job", response_model=None)
def create_manual_job(
    projectId: str, body: CreateWorkload, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _create(session, state.box, caller, projectId, "job", WorkloadKind.MANUAL_JOB, body)


@router.post("/jobs/cron", summary="Create cron job", response_model=None)
def create_cron_job(
    projectId: str, body: CreateWorkload, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _create(session, state.box, caller, projectId, "job", WorkloadKind.CRON_JOB, body)


@router.get("/services", summary="List services", response_model=None)
def list_services(projectId: str, session: DB, caller: Caller, page: Page) -> dict[str, Any]:
    return _list(session, caller, projectId, "service", page)


@router.get("/jobs", summary="List jobs", response_model=None)
def list_jobs(projectId: str, session: DB, caller: Caller, page: Page) -> dict[str, Any]:
    return _list(session, caller, projectId, "job", page)


@router.get("/services/{serviceId}", summary="Get service", response_model=None)
def get_service(projectId: str, serviceId: str, session: DB, caller: Caller) -> dict[str, Any]:
    caller.require(permissions.READ["service"], projectId)
    return envelope(workload_out(workload_store.get(session, projectId, "service", serviceId)))


@router.get("/jobs/{jobId}", summary="Get job", response_model=None)
def get_job(projectId: str, jobId: str, session: DB, caller: Caller) -> dict[str, Any]:
    caller.require(permissions.READ["job"], projectId)
    return envelope(workload_out(workload_store.get(session, projectId, "job", jobId)))
