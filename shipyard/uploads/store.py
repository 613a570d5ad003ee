"""Where uploads live and their life: received (size-capped, streamed to disk), claimed by
exactly one build in the transaction that starts it, deleted when that build has read it or
concluded, and swept by garbage collection when orphaned.

Archives are root's files in ``<data dir>/uploads`` (0600): the build extracts a copy into
its own work dir with the bundle extractor's checks (``pipeline.source_bundle``)."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.errors import InvalidRequest, ShipyardError
from shipyard.store.models import Build, Upload

_ID_PREFIX = "upload-"


class PayloadTooLarge(ShipyardError):
    """An upload over ``SHIPYARD_MAX_UPLOAD_BYTES`` (HTTP 413)."""

    slug = "payload-too-large"


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the upload is larger than {max_bytes} bytes (SHIPYARD_MAX_UPLOAD_BYTES); "
        "add what the build does not need to .dockerignore",
        {"maxBytes": max_bytes},
    )


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / "uploads"


def new_upload_id() -> str:
    return _ID_PREFIX + secrets.token_hex(12)


def archive_path(data_dir: Path, upload_id: str) -> Path:
    if not upload_id.startswith(_ID_PREFIX) or not upload_id[len(_ID_PREFIX) :].isalnum():
        raise ValueError(f"not an upload id: {upload_id!r}")
    return uploads_dir(data_dir) / f"{upload_id}.tar"


def looks_like_tar(head: bytes) -> bool:
    """A tar, or a compressed stream tarfile opens (gzip, bzip2, xz): checked on the first
    block, so a wrong upload is refused before it is stored."""
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar"


async def receive(chunks: AsyncIterator[bytes], dest: Path, *, max_bytes: int) -> tuple[int, str]:
    """Write the stream to ``dest`` (0600) while counting; returns (size, ``sha256:…``).
    Raises ``PayloadTooLarge`` past ``max_bytes`` and ``InvalidRequest`` for what is not a
    tar; ``dest`` is removed on any failure."""
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                if len(head) < 512:
                    head += chunk[: 512 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidRequest("the upload is empty: send the build context as a tar")
        if not looks_like_tar(head):
            raise InvalidRequest(
                "the upload is not a tar or tar.gz archive", {"body": "not a tar archive"}
            )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return size, f"sha256:{digest.hexdigest()}"


def record(session: Session, upload_id: str, project_id: str, size: int, digest: str) -> Upload:
    upload = Upload(
        id=upload_id,
        project_id=project_id,
        size=size,
        digest=digest,
        created_at=datetime.now(UTC),
        build_id=None,
    )
    session.add(upload)
    return upload


def pending(session: Session, project_id: str, *, ttl_s: float) -> int:
    """Uploads of the project no build was started from yet and not expired: what
    ``SHIPYARD_MAX_PENDING_UPLOADS`` bounds (with those being received)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=ttl_s)
    count = session.scalar(
        select(func.count())
        .select_from(Upload)
        .where(
            Upload.project_id == project_id,
            Upload.build_id.is_(None),
            Upload.created_at >= cutoff,
        )
    )
    return int(count or 0)


def claim(session: Session, upload_id: str, project_id: str, build_id: str) -> None:
    """Bind the upload to the build being started (same transaction): an upload builds
    once, and only in its own project."""
    claimed = session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.project_id == project_id, Upload.build_id.is_(None))
        .values(build_id=build_id)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise InvalidRequest(
            f"upload '{upload_id}' does not exist in this project or was already built "
            "(an upload builds once: upload the directory again)",
            {"uploadId": "unknown or used"},
        )


def discard(data_dir: Path, upload_id: str | None) -> None:
    """Delete the archive (the row stays: the build's record of what it was built from)."""
    if upload_id:
        try:
            archive_path(data_dir, upload_id).unlink(missing_ok=True)
        except ValueError:
            return


def sweep(sessions: sessionmaker[Session], data_dir: Path, *, ttl_s: float) -> int:
    """Garbage collection's part: delete archives whose build concluded (a crash can skip
    the build's own deletion), uploads no build was started from within ``ttl_s`` (row and
    file), and files without a row (a crash between receiving and recording). Returns the
    number of archives deleted."""
    directory = uploads_dir(data_dir)
    if not directory.is_dir():
        return 0
    cutoff = datetime.now(UTC) - timedelta(seconds=ttl_s)
    with sessions() as session:
        rows = session.execute(select(Upload.id, Upload.build_id, Upload.created_at)).all()
        concluded = set(
            session.scalars(
                select(Build.upload_id).where(Build.concluded, Build.upload_id.is_not(None))
            )
        )
        stale = [r.id for r in rows if r.build_id is None and r.created_at < cutoff]
        if stale:
            session.execute(delete(Upload).where(Upload.id.in_(stale)))
            session.commit()
    keep = {r.id for r in rows if r.id not in stale and r.id not in concluded}
    removed = 0
    for path in directory.glob("*.tar"):
        upload_id = path.stem
        if upload_id in keep:
            continue
        known = any(r.id == upload_id for r in rows)
        try:
            if not known and path.stat().st_mtime > time.time() - ttl_s:
                continue  # being received right now
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed
