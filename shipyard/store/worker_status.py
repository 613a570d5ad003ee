"""What the worker list and the fleet metrics say about workers: alive or not, and which
builds each holds (from the build rows, the truth; ``workers`` rows only say who exists)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.builds.status import RUNNING
from shipyard.store.builds import now
from shipyard.store.models import Build, Worker


def alive(worker: Worker, lease: timedelta, at: datetime | None = None) -> bool:
    """Renewed within the lease (a build's lease: the same clock for both)."""
    return (at or now()) - worker.last_heartbeat_at <= lease


def running_builds(session: Session) -> dict[str, list[str]]:
    """Build ids each worker holds now, by worker id."""
    rows = session.execute(
        select(Build.worker_id, Build.id)
        .where(Build.status.in_([s.value for s in RUNNING]), Build.concluded.is_(False))
        .order_by(Build.started_at, Build.id)
    )
    held: dict[str, list[str]] = defaultdict(list)
    for worker_id, build_id in rows:
        held[worker_id or ""].append(build_id)
    return dict(held)
