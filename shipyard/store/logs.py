"""Build logs: append-only lines ``(build_id, attempt, seq, ts, line)``, read by sequence."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.store import listen
from shipyard.store.models import BuildLogLine


def append(
    session: Session,
    build_id: str,
    attempt: int,
    first_seq: int,
    lines: Sequence[tuple[datetime, str]],
) -> None:
    if not lines:
        return
    session.execute(
        insert(BuildLogLine),
        [
            {"build_id": build_id, "attempt": attempt, "seq": first_seq + i, "ts": ts, "line": line}
            for i, (ts, line) in enumerate(lines)
        ],
    )
    # Live tails on any machine re-read once this chunk is committed.
    listen.publish(session, listen.LOGS, build_id)


def next_seq(session: Session, build_id: str) -> int:
    current = session.scalar(
        select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == build_id)
    )
    return 0 if current is None else int(current) + 1


def after_seq(session: Session, build_id: str, seq: int, limit: int) -> list[BuildLogLine]:
    return list(
        session.scalars(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id, BuildLogLine.seq > seq)
            .order_by(BuildLogLine.seq)
            .limit(limit)
        )
    )


def in_range(
    session: Session,
    build_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    backward: bool,
) -> list[BuildLogLine]:
    query = select(BuildLogLine).where(BuildLogLine.build_id == build_id)
    if start is not None:
        query = query.where(BuildLogLine.ts >= start)
    if end is not None:
        query = query.where(BuildLogLine.ts <= end)
    order = BuildLogLine.seq.desc() if backward else BuildLogLine.seq
    rows = list(session.scalars(query.order_by(order).limit(limit)))
    return rows


SCAN_BATCH = 2_000


def scan(
    session: Session,
    build_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    backward: bool,
    batch: int = SCAN_BATCH,
) -> Iterator[list[BuildLogLine]]:
    """Every line of the build (in the time window) in order, ``batch`` lines a query
    (keyset on ``seq``): a filtered search reads the whole log without holding it at once."""
    last: int | None = None
    while True:
        query = select(BuildLogLine).where(BuildLogLine.build_id == build_id)
        if start is not None:
            query = query.where(BuildLogLine.ts >= start)
        if end is not None:
            query = query.where(BuildLogLine.ts <= end)
        if last is not None:
            query = query.where(BuildLogLine.seq < last if backward else BuildLogLine.seq > last)
        order = BuildLogLine.seq.desc() if backward else BuildLogLine.seq
        rows = list(session.scalars(query.order_by(order).limit(batch)))
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1].seq


def text_bytes(sessions: sessionmaker[Session]) -> int:
    """Characters of log text stored (``/metrics``: the logs' share of the database)."""
    with sessions() as session:
        return int(
            session.scalar(select(func.coalesce(func.sum(func.length(BuildLogLine.line)), 0))) or 0
        )
