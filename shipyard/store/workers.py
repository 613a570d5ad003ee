"""Build workers (``shipyard worker``): one row per process, renewed while it runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shipyard.builds.status import RUNNING
from shipyard.store.builds import now
from shipyard.store.models import Build, Worker


def register(session: Session, worker_id: str, hostname: str, pid: int, concurrency: int) -> None:
    stamp = now()
    session.merge(
        Worker(
            id=worker_id,
            hostname=hostname,
            pid=pid,
            started_at=stamp,
            last_heartbeat_at=stamp,
            concurrency=concurrency,
            running=0,
        )
    )


def heartbeat(session: Session, worker_id: str, running: int) -> bool:
    """Renew the row; False when it is gone (pruned while this worker was away)."""
    result = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(last_heartbeat_at=now(), running=running)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def unregister(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


def listed(session: Session) -> Sequence[Worker]:
    return list(session.scalars(select(Worker).order_by(Worker.started_at, Worker.id)))


def prune(session: Session, older_than: timedelta) -> int:
    """Forget workers silent for ``older_than`` (killed without unregistering)."""
    cutoff: datetime = now() - older_than
    result = session.execute(delete(Worker).where(Worker.last_heartbeat_at < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]


def alive(worker: Worker, lease: timedelta, at: datetime | None = None) -> bool:
    """Renewed within the lease (a build's lease: the same clock for both)."""
    return (at or now()) - worker.last_heartbeat_at <= lease


def running_builds(session: Session) -> dict[str, list[str]]:
    """Build ids each worker holds now (from the build rows, the truth), by worker id."""
    rows = session.execute(
        select(Build.worker_id, Build.id)
        .where(Build.status.in_([s.value for s in RUNNING]), Build.concluded.is_(False))
        .order_by(Build.started_at, Build.id)
    )
    held: dict[str, list[str]] = defaultdict(list)
    for worker_id, build_id in rows:
        held[worker_id or ""].append(build_id)
    return dict(held)
