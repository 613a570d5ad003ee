"""Start, list, get and abort builds of services and jobs (the seeds' two endpoints and their
neighbours in CONTRACT.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header
from sqlalchemy.orm import Session

from shipyard.api.deps import DB, AppState, Caller, State
from shipyard.api.pagination import Page, encode_cursor, pagination
from shipyard.api.schemas.builds import (
    BuildOverrides,
    SecretOverrides,
    StartBuildFromBundle,
    StartBuildFromGit,
    StartBuildFromUpload,
    StartJobBuildBody,
    StartServiceBuildBody,
)
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds import permissions
from shipyard.builds import service as build_service
from shipyard.builds.bundle_url import redact as redact_bundle_url
from shipyard.builds.errors import InvalidRequest
from shipyard.builds.request import (
    BuildRequest,
    DockerOverrides,
    Overrides,
    WorkloadKind,
    check_secret_budget,
    decode_secret,
    resolve_source,
)
from shipyard.gc.retention import collected_message
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Build, Workload
from shipyard.uploads import store as uploads

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["builds"])

Entity = Literal["service", "job"]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def durations(build: Build, now: datetime | None = None) -> dict[str, float]:
    """Seconds spent queued, running and in total (so far, for a build still running).
    Shipyard's extension: Northflank's Build has no durations."""
    end = build.concluded_at or (now or datetime.now(UTC))
    started = build.started_at
    values = {
        # A build aborted while queued never started: it was queued until it concluded.
        "queued": _seconds(build.created_at, started or end),
        "running": _seconds(started, end),
        "total": _seconds(build.created_at, end),
    }
    return {k: v for k, v in values.items() if v is not None}


def build_out(build: Build) -> dict[str, Any]:
    # Optional strings are omitted when unset, never null (the .d.ts: ``branch?: string``).
    message = build.message
    registry: dict[str, Any] = {"uri": build.registry_uri} if build.registry_uri else {}
    if build.image_collected_at is not None:
        # registry.uri stays (what the build produced); these say it no longer pulls.
        message = collected_message(message, build.image_collected_at)
        registry["imageCollected"] = True
        registry["collectedAt"] = iso_ms(build.image_collected_at)
    optional: dict[str, Any] = {
        "branch": build.branch,
        "sha": build.sha,
        "message": message,
        "startedAt": iso_ms(build.started_at) if build.started_at else None,
        "concludedAt": iso_ms(build.concluded_at) if build.concluded_at else None,
        "buildConcludedAt": int(build.concluded_at.timestamp()) if build.concluded_at else None,
        # Redacted again on the way out: rows queued before migration 0004 hold the raw URL.
        "bundleUrl": redact_bundle_url(build.bundle_url) if build.bundle_url else None,
        # Log retention removed the build's log lines (one line in the log says so).
        "logsExpiredAt": iso_ms(build.logs_expired_at) if build.logs_expired_at else None,
        "uploadId": build.upload_id,  # Shipyard's own: built from an uploaded context
    }
    return {
        "id": build.id,
        "pullRequestId": build.pull_request_id,
        "registry": registry,
        "createdAt": iso_ms(build.created_at),
        "status": build.status,
        "concluded": build.concluded,
        "success": build.success,
        **{k: v for k, v in optional.items() if v is not None},
        "durations": durations(build),
        # Shipyard's extension: what started the build (a webhook delivery, or the API).
        "trigger": build.trigger or {"type": "api"},
    }


def to_overrides(body: SecretOverrides | None) -> Overrides:
    if body is None:
        return Overrides()
    docker = body.docker if isinstance(body, BuildOverrides) else None
    overrides = Overrides(
        build_arguments=dict(body.buildArguments or {}),
        build_files={
            path: decode_secret(f"overrides.buildFiles.{path}", v.data, v.encoding)
            for path, v in (body.buildFiles or {}).items()
        },
        secret_mounts={
            key: decode_secret(f"overrides.dockerSecretMounts.{key}", v.data, v.encoding)
            for key, v in (body.dockerSecretMounts or {}).items()
        },
        docker=DockerOverrides(
            dockerfile_path=docker.dockerFilePath if docker else None,
            work_dir=docker.dockerWorkDir if docker else None,
            target=docker.dockerfileTarget if docker else None,
            dockerfile_contents=docker.dockerfileContents if docker else None,
        ),
    )
    check_secret_budget(overrides)
    return overrides


def _fingerprint(box: SecretBox, entity: Entity, body: dict[str, Any]) -> str:
    """Keyed (HMAC): the body holds build arguments, files and secret mounts, and a plain
    hash of it in the database let a short secret be guessed offline. ``purpose`` keeps it
    apart from the other digests made with the same key."""
    return box.fingerprint({"purpose": "idempotency", "entity": entity, "body": body})


def _start(
    session: Session,
    state: AppState,
    workload: Workload,
    request: BuildRequest,
    idempotency_key: str | None,
    fingerprint: str,
) -> dict[str, Any]:
    build, created = build_service.start(
        session,
        state.box,
        workload,
        request,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        max_queued=state.settings.max_queued_builds_per_project,
    )
    session.commit()
    if created:
        state.executor.submit(build.id)
    return envelope(build_out(build))


@router.post("/services/{serviceId}/build", summary="Start service build", response_model=None)
def start_service_build(
    projectId: str,
    serviceId: str,
    session: DB,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
    payload: Annotated[StartServiceBuildBody | None, Body()] = None,
) -> dict[str, Any]:
    # The js-client sends no body when the call has no ``data``: that is ``{}``.
    body = payload if payload is not None else StartBuildFromGit()
    caller.require(permissions.DEPLOY_BUILD["service"], projectId)
    workload = workload_store.get(session, projectId, "service", serviceId)
    upload_id = None
    if isinstance(body, StartBuildFromBundle):
        pull_request_id, bundle_url = None, body.bundleUrl
    elif isinstance(body, StartBuildFromUpload):
        pull_request_id, bundle_url, upload_id = None, None, body.uploadId
    else:
        pull_request_id, bundle_url = body.pullRequestId, None
    source = resolve_source(
        WorkloadKind(workload.kind),
        default_branch=workload.vcs_branch,
        sha=body.sha,
        branch=body.branch,
        pull_request_id=pull_request_id,
        bundle_url=bundle_url,
        upload_id=upload_id,
    )
    request = BuildRequest(source=source, overrides=to_overrides(body.overrides))
    fingerprint = _fingerprint(
        state.box, "service", body.model_dump(mode="json", exclude_none=True)
    )
    return _start(session, state, workload, request, idempotency_key, fingerprint)


@router.post("/jobs/{jobId}/build", summary="Start job build", response_model=None)
def start_job_build(
    projectId: str,
    jobId: str,
    session: DB,
    state: State,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
    payload: Annotated[StartJobBuildBody | None, Body()] = None,
) -> dict[str, Any]:
    body = payload if payload is not None else StartJobBuildBody()
    caller.require(permissions.DEPLOY_BUILD["job"], projectId)
    workload = workload_store.get(session, projectId, "job", jobId)
    source = resolve_source(
        WorkloadKind(workload.kind),
        default_branch=workload.vcs_branch,
        sha=body.sha,
        branch=None,
        pull_request_id=None,
        bundle_url=None,
    )
    request = BuildRequest(source=source, overrides=to_overrides(body.overrides))
    fingerprint = _fingerprint(state.box, "job", body.model_dump(mode="json", exclude_none=True))
    return _start(session, state, workload, request, idempotency_key, fingerprint)


def _list(
    session: Session, caller: Caller, project_id: str, entity: Entity, slug: str, page: Page
) -> dict[str, Any]:
    caller.require(permissions.READ[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    after = None
    if page.cursor is not None:
        try:
            after = build_store.PageKey(
                datetime.fromisoformat(page.cursor["c"]), str(page.cursor["i"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest("cursor is not valid", {"cursor": "invalid"}) from exc
    rows = build_store.list_page(
        session, workload.id, limit=page.per_page + 1, offset=page.offset, after=after
    )
    shown = rows[: page.per_page]
    cursor = (
        encode_cursor({"c": shown[-1].created_at.isoformat(), "i": shown[-1].id}) if shown else None
    )
    return envelope(
        {"builds": [build_out(b) for b in shown]}, pagination(len(rows), page.per_page, cursor)
    )


@router.get("/services/{serviceId}/build", summary="List service builds", response_model=None)
def list_service_builds(
    projectId: str, serviceId: str, session: DB, caller: Caller, page: Page
) -> dict[str, Any]:
    return _list(session, caller, projectId, "service", serviceId, page)


@router.get("/jobs/{jobId}/build", summary="List job builds", response_model=None)
def list_job_builds(
    projectId: str, jobId: str, session: DB, caller: Caller, page: Page
) -> dict[str, Any]:
    return _list(session, caller, projectId, "job", jobId, page)


def _get(
    session: Session, caller: Caller, project_id: str, entity: Entity, slug: str, build_id: str
) -> Build:
    caller.require(permissions.GET_BUILD[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    return build_store.get(session, workload.id, build_id)


@router.get(
    "/services/{serviceId}/build/{buildId}", summary="Get service build", response_model=None
)
def get_service_build(
    projectId: str, serviceId: str, buildId: str, session: DB, caller: Caller
) -> dict[str, Any]:
    return envelope(build_out(_get(session, caller, projectId, "service", serviceId, buildId)))


@router.get("/jobs/{jobId}/build/{buildId}", summary="Get job build", response_model=None)
def get_job_build(
    projectId: str, jobId: str, buildId: str, session: DB, caller: Caller
) -> dict[str, Any]:
    return envelope(build_out(_get(session, caller, projectId, "job", jobId, buildId)))


def _abort(
    session: Session,
    state: AppState,
    caller: Caller,
    project_id: str,
    entity: Entity,
    slug: str,
    build_id: str,
) -> dict[str, Any]:
    caller.require(permissions.DEPLOY_BUILD[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    build = build_store.get(session, workload.id, build_id)
    worker_must_act = build_service.abort(session, build)
    session.commit()
    if worker_must_act:
        state.executor.abort(build.id)
    elif build.upload_id:
        # Aborted while queued: no pipeline will read (and delete) its upload.
        uploads.discard(state.settings.data_dir, build.upload_id)
    session.refresh(build)
    return envelope(build_out(build))


@router.delete(
    "/services/{serviceId}/build/{buildId}", summary="Abort service build", response_model=None
)
def abort_service_build(
    projectId: str, serviceId: str, buildId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _abort(session, state, caller, projectId, "service", serviceId, buildId)


@router.delete("/jobs/{jobId}/build/{buildId}", summary="Abort job build", response_model=None)
def abort_job_build(
    projectId: str, jobId: str, buildId: str, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    return _abort(session, state, caller, projectId, "job", jobId, buildId)
