"""``POST /v1/projects/{p}/uploads``: a build context as a tar (optionally gzip), streamed to
disk; then ``POST …/services/{s}/build`` with ``{"uploadId": …}`` builds it once (Shipyard's
own endpoint and field: Northflank builds only from git or a ``bundleUrl``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import DB, AppState, Caller, State
from shipyard.api.guards import slots
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds import permissions
from shipyard.builds.errors import TooManyRequests
from shipyard.store import projects as project_store
from shipyard.uploads import store as uploads

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["uploads"])


_BODY = {
    "requestBody": {
        "required": True,
        "description": "The build context as a tar, optionally gzip/bzip2/xz compressed",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("application/gzip", "application/x-tar", "application/octet-stream")
        },
    }
}


@router.post(
    "/uploads",
    summary="Upload a build context (tar)",
    response_model=None,
    openapi_extra=_BODY,
)
async def create_upload(
    projectId: str, request: Request, session: DB, state: State, caller: Caller
) -> dict[str, Any]:
    # Whoever may start a service build of the project may upload what it builds.
    caller.require(permissions.DEPLOY_BUILD["service"], projectId)
    await run_in_threadpool(project_store.get, session, projectId)  # 404 before any byte
    max_bytes = state.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise uploads.too_large(max_bytes)  # before reading a byte
    limit, ttl_s = state.settings.max_pending_uploads, state.settings.upload_ttl_s
    refusal = TooManyRequests(
        f"project '{projectId}' already has {limit} pending uploads "
        "(SHIPYARD_MAX_PENDING_UPLOADS: received or being received, no build started from "
        f"them yet); start a build from one, or wait for them to expire ({int(ttl_s)} s)",
        {"maxPendingUploads": limit},
        retry_after_s=30,
    )
    receiving = slots(request.app, "uploads")
    receiving.acquire(projectId, limit, refusal)  # counted before the database is asked
    try:

        def count() -> int:
            try:
                return uploads.pending(session, projectId, ttl_s=ttl_s)
            finally:
                session.close()  # the body may take minutes: hold no connection meanwhile

        if await run_in_threadpool(count) + receiving.held(projectId) > limit:
            raise refusal
        return await _receive(projectId, request, session, state, max_bytes)
    finally:
        receiving.release(projectId)


async def _receive(
    projectId: str, request: Request, session: Session, state: AppState, max_bytes: int
) -> dict[str, Any]:
    upload_id = uploads.new_upload_id()
    path = uploads.archive_path(state.settings.data_dir, upload_id)
    size, digest = await uploads.receive(request.stream(), path, max_bytes=max_bytes)

    def save() -> dict[str, Any]:
        try:
            row = uploads.record(session, upload_id, projectId, size, digest)
            session.commit()
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        expires = row.created_at + timedelta(seconds=state.settings.upload_ttl_s)
        return {
            "id": row.id,
            "size": row.size,
            "digest": row.digest,
            "createdAt": iso_ms(row.created_at),
            "expiresAt": iso_ms(expires),
        }

    return envelope(await run_in_threadpool(save))
