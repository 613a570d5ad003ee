"""The build queue as the dispatch policy sees it (``shipyard.builds.fairness``): a snapshot of
queued and running builds, a claim that re-checks the limits in the same UPDATE, and the
queued builds' ``Queued: …`` log lines.

Concurrent claimers (threads, processes, machines) cannot both take one build: the claim is
a conditional UPDATE on ``status = QUEUED`` that bumps ``attempt`` (DESIGN.md "Running
builds"). The limits are part of that UPDATE's WHERE clause too. SQLite runs one write
statement at a time, so those subqueries see every earlier claim. PostgreSQL (READ
COMMITTED) would let two claims of different builds pass the same count, so each claim
first takes a transaction-scoped advisory lock: claims are serialised (they take
milliseconds) and each one's UPDATE sees the one before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import and_, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, aliased

from shipyard.builds.fairness import QUEUED_PREFIX, Limits, Running, Waiting
from shipyard.builds.status import RUNNING, BuildStatus
from shipyard.store import listen
from shipyard.store.builds import now
from shipyard.store.models import Build, BuildLogLine, Workload

# pg_advisory_xact_lock key of the dispatch critical section ("shipyard" as a number).
DISPATCH_LOCK = 0x5348_4950_5941_5244 & 0x7FFF_FFFF_FFFF_FFFF
_RUNNING = [s.value for s in RUNNING]


def lock_dispatch(session: Session) -> None:
    """Serialise claims and queue notices across processes until the transaction ends.
    (SQLite serialises writers on its own.)"""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK})


def snapshot(
    session: Session, per_service: int | None = None
) -> tuple[list[Waiting], list[Running]]:
    """Queued and running builds. ``per_service``: only the oldest that many queued builds of
    each service or job (what a claim can pick from: a service's later builds never start
    before its earlier ones), so a long queue costs a claim little."""
    queued = (
        select(
            Build.id.label("id"),
            Build.attempt.label("attempt"),
            Build.created_at.label("created_at"),
            Build.workload_id.label("workload_id"),
            Workload.project_id.label("project_id"),
            Workload.slug.label("slug"),
            Workload.entity.label("entity"),
        )
        .join(Workload, Workload.id == Build.workload_id)
        .where(
            Build.concluded.is_(False),
            Build.status == BuildStatus.QUEUED,
            Build.abort_requested.is_(False),  # never claimed; whoever aborts concludes it
        )
    )
    if per_service is not None:
        rank = (
            func.row_number()
            .over(partition_by=Build.workload_id, order_by=(Build.created_at, Build.id))
            .label("rank")
        )
        heads = queued.add_columns(rank).subquery()
        rows = session.execute(
            select(
                heads.c.id, heads.c.attempt, heads.c.created_at, heads.c.workload_id,
                heads.c.project_id, heads.c.slug, heads.c.entity,
            ).where(heads.c.rank <= per_service)
        )  # fmt: skip
    else:
        rows = session.execute(queued)
    waiting = [
        Waiting(build_id, project, workload_id, slug, entity, _aware(created), int(attempt))
        for build_id, attempt, created, workload_id, project, slug, entity in rows
    ]
    held = session.execute(
        select(Build.id, Workload.project_id, Build.workload_id)
        .join(Workload, Workload.id == Build.workload_id)
        .where(Build.concluded.is_(False), Build.status.in_(_RUNNING))
    )
    running = [Running(build_id, project, workload_id) for build_id, project, workload_id in held]
    return waiting, running


def _aware(value: datetime | str) -> datetime:
    """Through a subquery the column loses its type on SQLite (a string comes back)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def claim_within(session: Session, build: Waiting, worker_id: str, limits: Limits) -> int | None:
    """QUEUED → STARTING if the limits still allow it, in one conditional UPDATE; returns the
    new attempt, or None (taken by someone else, aborted, or a limit is reached now)."""
    others = aliased(Build)
    running = and_(others.status.in_(_RUNNING), others.concluded.is_(False))
    conditions = [
        Build.id == build.build_id,
        Build.status == BuildStatus.QUEUED,
        Build.concluded.is_(False),
        Build.abort_requested.is_(False),
        select(func.count()).select_from(others).where(running).scalar_subquery()
        < limits.global_max,
    ]
    if limits.project_max is not None:
        owner = aliased(Workload)
        in_project = (
            select(func.count())
            .select_from(others)
            .join(owner, owner.id == others.workload_id)
            .where(running, owner.project_id == build.project_id)
            .scalar_subquery()
        )
        conditions.append(in_project < limits.project_max)
    if limits.service_max:
        in_service = (
            select(func.count())
            .select_from(others)
            .where(running, others.workload_id == build.workload_id)
            .scalar_subquery()
        )
        conditions.append(in_service < limits.service_max)
    stamp = now()
    result = session.execute(
        update(Build)
        .where(*conditions)
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


def last_lines(session: Session, build_ids: Sequence[str]) -> dict[str, str]:
    """The newest log line of each of these builds (that has one)."""
    if not build_ids:
        return {}
    newest = (
        select(BuildLogLine.build_id, func.max(BuildLogLine.seq).label("seq"))
        .where(BuildLogLine.build_id.in_(build_ids))
        .group_by(BuildLogLine.build_id)
        .subquery()
    )
    rows = session.execute(
        select(BuildLogLine.build_id, BuildLogLine.line).join(
            newest,
            and_(newest.c.build_id == BuildLogLine.build_id, newest.c.seq == BuildLogLine.seq),
        )
    )
    return {build_id: line for build_id, line in rows}


def append_notice(session: Session, build_id: str, line: str, at: datetime | None = None) -> bool:
    """Append ``line`` to a build's log while it is still QUEUED (one INSERT … SELECT: once a
    worker has claimed the build, its own log writer owns the sequence)."""
    if not line.startswith(QUEUED_PREFIX):
        raise ValueError("queue notices start with 'Queued: '")
    next_seq = (
        select(func.coalesce(func.max(BuildLogLine.seq), -1) + 1)
        .where(BuildLogLine.build_id == build_id)
        .scalar_subquery()
    )
    source = select(
        Build.id, Build.attempt, next_seq, literal(at or now(), BuildLogLine.ts.type), literal(line)
    ).where(Build.id == build_id, Build.status == BuildStatus.QUEUED, Build.concluded.is_(False))
    result = session.execute(
        insert(BuildLogLine).from_select(["build_id", "attempt", "seq", "ts", "line"], source)
    )
    added = bool(result.rowcount)  # type: ignore[attr-defined]
    if added:
        listen.publish(session, listen.LOGS, build_id)
    return added
