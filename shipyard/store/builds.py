"""Queries about builds, including the claim-and-fence writes of DESIGN.md ("Running builds").

Every write a worker makes after its claim carries ``attempt`` and ``NOT concluded`` in its
WHERE clause, so a stale worker or a duplicate delivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.builds.errors import NotFound, not_found_slug
from shipyard.builds.ids import new_build_id
from shipyard.builds.status import RUNNING, BuildStatus
from shipyard.store import listen
from shipyard.store.models import Build, BuildLogLine

_ID_ATTEMPTS = 20


def now() -> datetime:
    return datetime.now(UTC)


def insert(session: Session, build: Build, seal: Callable[[Build], None]) -> Build:
    """Insert with a fresh random id: one INSERT (``seal(build)`` fills the encrypted columns,
    which are bound to the id, once the id is set). On the rare clash with an existing id the
    transaction is rolled back and another id drawn, so the caller must not have written
    anything else in it. A clash on the Idempotency-Key is raised as ``IntegrityError``."""
    for _ in range(_ID_ATTEMPTS):
        build.id = new_build_id()
        seal(build)
        session.add(build)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            if build.idempotency_key is not None and by_idempotency_key(
                session, build.workload_id, build.idempotency_key
            ):
                raise
            continue
        return build
    raise RuntimeError("could not allocate a unique build id")


def get(session: Session, workload_id: int, build_id: str) -> Build:
    build = session.scalar(
        select(Build).where(Build.id == build_id, Build.workload_id == workload_id)
    )
    if build is None:
        raise NotFound(f"build '{build_id}' not found", slug=not_found_slug("build"))
    return build


def get_any(session: Session, build_id: str) -> Build | None:
    return session.get(Build, build_id)


def by_idempotency_key(session: Session, workload_id: int, key: str) -> Build | None:
    return session.scalar(
        select(Build).where(Build.workload_id == workload_id, Build.idempotency_key == key)
    )


@dataclass(frozen=True)
class PageKey:
    created_at: datetime
    build_id: str


def list_page(
    session: Session, workload_id: int, *, limit: int, offset: int, after: PageKey | None
) -> list[Build]:
    """Newest first. ``after`` (keyset) wins over ``offset`` so cursors are stable under inserts."""
    query = select(Build).where(Build.workload_id == workload_id)
    if after is not None:
        query = query.where(
            tuple_(Build.created_at, Build.id) < tuple_(after.created_at, after.build_id)
        )
    else:
        query = query.offset(offset)
    query = query.order_by(Build.created_at.desc(), Build.id.desc()).limit(limit)
    return list(session.scalars(query))


def conclude_if_waiting(session: Session, build_id: str, status: BuildStatus, message: str) -> bool:
    """Conclude a build no worker holds (abort of a queued build). A build a worker handed
    back (``hand_back``) is QUEUED again with attempt > 0: no worker writes it any more
    (their writes require ``status <> QUEUED``), so it is concluded here too."""
    result = session.execute(
        update(Build)
        .where(
            Build.id == build_id,
            Build.status == BuildStatus.QUEUED,
            Build.concluded.is_(False),
        )
        .values(
            status=status,
            concluded=True,
            success=False,
            message=message,
            concluded_at=now(),
            abort_requested=True,
        )
    )
    concluded = bool(result.rowcount)  # type: ignore[attr-defined]
    if concluded:
        listen.publish(session, listen.LOGS, build_id)  # its live tails end
    return concluded


def request_abort(session: Session, build_id: str) -> bool:
    """Flag a running build for abort; its worker hears of it on ``shipyard_abort`` (on
    PostgreSQL, at commit) or on its next heartbeat."""
    result = session.execute(
        update(Build)
        .where(Build.id == build_id, Build.concluded.is_(False))
        .values(abort_requested=True)
    )
    flagged = bool(result.rowcount)  # type: ignore[attr-defined]
    if flagged:
        listen.publish(session, listen.ABORT, build_id)
    return flagged


def reusable(session: Session, workload_id: int, sha: str, reuse_key: str) -> Build | None:
    """The newest successful build of this commit with the same image-shaping inputs."""
    return session.scalar(
        select(Build)
        .where(
            Build.workload_id == workload_id,
            Build.sha == sha,
            Build.reuse_key == reuse_key,
            Build.status == BuildStatus.SUCCESS,
            Build.registry_uri.is_not(None),
            Build.image_collected_at.is_(None),
        )
        .order_by(Build.concluded_at.desc())
        .limit(1)
    )


# --- worker side -------------------------------------------------------------------------


def queued_ids(session: Session, limit: int) -> list[str]:
    rows = session.scalars(
        select(Build.id)
        .where(Build.status == BuildStatus.QUEUED, Build.concluded.is_(False))
        .order_by(Build.created_at, Build.id)
        .limit(limit)
    )
    return list(rows)


def claim(session: Session, build_id: str, worker_id: str) -> int | None:
    """QUEUED → STARTING in one conditional UPDATE; returns the attempt, or None if taken."""
    stamp = now()
    result = session.execute(
        update(Build)
        .where(
            Build.id == build_id,
            Build.status == BuildStatus.QUEUED,
            Build.concluded.is_(False),
            Build.abort_requested.is_(False),
        )
        .values(
            status=BuildStatus.STARTING,
            attempt=Build.attempt + 1,
            worker_id=worker_id,
            heartbeat_at=stamp,
            started_at=stamp,
        )
        .returning(Build.attempt)
    )
    row = result.first()
    return int(row[0]) if row is not None else None


def _mine(build_id: str, attempt: int) -> list[Any]:
    """The fence of every write of a run: its attempt, not concluded, and not handed back
    (a re-queued build keeps its attempt until the next claim bumps it, so the attempt
    alone would let the old run write a build that waits for its next worker)."""
    return [
        Build.id == build_id,
        Build.attempt == attempt,
        Build.concluded.is_(False),
        Build.status != BuildStatus.QUEUED,
    ]


def fenced_update(session: Session, build_id: str, attempt: int, **values: Any) -> bool:
    result = session.execute(update(Build).where(*_mine(build_id, attempt)).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def hand_back(session: Session, build_id: str, attempt: int) -> bool:
    """Re-queue a build this run holds (graceful shutdown, watchdog, lease sweep): QUEUED
    again for any worker to claim as attempt + 1; fenced like every write of the run."""
    result = session.execute(
        update(Build)
        .where(*_mine(build_id, attempt))
        .values(status=BuildStatus.QUEUED, worker_id=None, heartbeat_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def conclude(
    session: Session,
    build_id: str,
    attempt: int,
    status: BuildStatus,
    message: str | None,
    **values: Any,
) -> bool:
    concluded = fenced_update(
        session,
        build_id,
        attempt,
        status=status,
        concluded=True,
        success=status is BuildStatus.SUCCESS,
        message=message,
        concluded_at=now(),
        **values,
    )
    if concluded:
        listen.publish(session, listen.LOGS, build_id)  # its live tails end
    return concluded


def heartbeat(session: Session, build_id: str, attempt: int) -> bool | None:
    """Renew the lease; returns ``abort_requested``, or None when the build is no longer ours."""
    result = session.execute(
        update(Build)
        .where(*_mine(build_id, attempt))
        .values(heartbeat_at=now())
        .returning(Build.abort_requested)
    )
    row = result.first()
    return bool(row[0]) if row is not None else None


def expired_leases(session: Session, lease: timedelta) -> Sequence[Build]:
    return list(
        session.scalars(
            select(Build).where(
                Build.status.in_([s.value for s in RUNNING]),
                Build.concluded.is_(False),
                Build.heartbeat_at < now() - lease,
            )
        )
    )


def running_held_by(session: Session, worker_prefix: str) -> Sequence[Build]:
    return list(
        session.scalars(
            select(Build).where(
                and_(
                    Build.status.in_([s.value for s in RUNNING]),
                    Build.concluded.is_(False),
                    Build.worker_id.startswith(worker_prefix),
                )
            )
        )
    )


# --- deletes and cache resets ------------------------------------------------------------


def unconcluded(session: Session, workload_ids: Sequence[int]) -> list[Build]:
    """Builds of these workloads that are queued or running."""
    if not workload_ids:
        return []
    return list(
        session.scalars(
            select(Build).where(Build.workload_id.in_(workload_ids), Build.concluded.is_(False))
        )
    )


def forget_reuse(session: Session, workload_id: int) -> int:
    """Make every earlier build of the workload ineligible for whole-build reuse (its image
    stays): the next build of the same commit and settings builds afresh."""
    result = session.execute(
        update(Build)
        .where(Build.workload_id == workload_id, Build.reuse_key.is_not(None))
        .values(reuse_key=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def latest(session: Session, workload_id: int) -> Build | None:
    return session.scalar(
        select(Build)
        .where(Build.workload_id == workload_id)
        .order_by(Build.created_at.desc(), Build.id.desc())
        .limit(1)
    )


def delete_for(session: Session, workload_ids: Sequence[int]) -> None:
    """Delete the builds of these workloads and their log lines (with them the sealed
    overrides and bundle URLs). Explicit rather than relying on ON DELETE CASCADE, which
    SQLite applies only with foreign keys on."""
    if not workload_ids:
        return
    ids = select(Build.id).where(Build.workload_id.in_(workload_ids)).scalar_subquery()
    session.execute(delete(BuildLogLine).where(BuildLogLine.build_id.in_(ids)))
    session.execute(delete(Build).where(Build.workload_id.in_(workload_ids)))
