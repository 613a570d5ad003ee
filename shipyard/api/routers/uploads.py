"""``POST /v1/projects/{p}/uploads``: a build context as a tar (optionally gzip), streamed to
disk; then ``POST …/services/{s}/build`` with ``{"uploadId": …}`` builds it once (Shipyard's
own endpoint and field: Northflank builds only from git or a ``bundleUrl``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import DB, Caller, State
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds import permissions
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
