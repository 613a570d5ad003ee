"""Workers: each process that runs builds keeps a row (identity, slots, last heartbeat).

The build rows stay the truth about builds (which worker holds one is ``builds.worker_id``);
this table only says which workers exist and whether they are alive, for the admin listing
and the liveness metrics. A worker inserts its row at start, renews ``last_heartbeat_at``
with its build heartbeats and deletes the row when it stops; a killed worker's row stays,
with an old heartbeat (not alive).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Integer, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from shipyard.builds.status import RUNNING
from shipyard.store.builds import now
from shipyard.store.models import Base, Build, UTCDateTime


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    concurrency: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)  # as the worker last reported it

    def alive(self, lease: timedelta, at: datetime | None = None) -> bool:
        """Renewed within the lease (a build's lease: the same clock for both)."""
        return (at or now()) - self.last_heartbeat_at <= lease


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


def beat(session: Session, worker_id: str, running: int) -> bool:
    """Renew the worker's heartbeat; False when its row is gone (the caller registers again)."""
    result = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(last_heartbeat_at=now(), running=running)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


def forget_stale(session: Session, older_than: timedelta) -> int:
    """Delete rows of workers silent for ``older_than`` (killed, or their machine gone)."""
    result = session.execute(delete(Worker).where(Worker.last_heartbeat_at < now() - older_than))
    return int(result.rowcount)  # type: ignore[attr-defined]


def every(session: Session) -> list[Worker]:
    return list(session.scalars(select(Worker).order_by(Worker.started_at, Worker.id)))


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
