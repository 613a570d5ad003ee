"""Build workers (``shipyard worker``): one row per process, renewed while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shipyard.store.builds import now
from shipyard.store.models import Worker


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
