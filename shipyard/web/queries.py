"""Read-only queries the pages need beyond the API's: builds filtered by status and branch,
log lines by number (a 2 M-line log is read a page at a time), and the lines a build summary
is made of (stage markers, buildah's STEP and cache lines)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shipyard.builds.status import CONCLUDED, RUNNING, WAITING
from shipyard.store.models import Build, BuildLogLine, Workload

# The status filter's choices: a group name or one final status.
STATUS_GROUPS: dict[str, frozenset[str]] = {
    "active": frozenset(s.value for s in RUNNING | WAITING),
    "SUCCESS": frozenset({"SUCCESS"}),
    "FAILURE": frozenset({"FAILURE", "SUBMISSION_FAILURE"}),
    "ABORTED": frozenset({"ABORTED"}),
    "CRASHED": frozenset({"CRASHED"}),
}
assert set().union(*STATUS_GROUPS.values()) >= {s.value for s in CONCLUDED}


def workload_counts(session: Session, project_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per project: how many services and jobs it has."""
    if not project_ids:
        return {}
    query = (
        select(Workload.project_id, Workload.entity, func.count())
        .where(Workload.project_id.in_(list(project_ids)))
        .group_by(Workload.project_id, Workload.entity)
    )
    counts: dict[str, dict[str, int]] = {}
    for project_id, entity, count in session.execute(query):
        counts.setdefault(str(project_id), {})[str(entity)] = int(count)
    return counts


@dataclass(frozen=True)
class BuildPage:
    builds: list[Build]
    has_next: bool


def builds_page(
    session: Session,
    workload_id: int,
    *,
    status: str | None,
    branch: str | None,
    offset: int,
    limit: int,
) -> BuildPage:
    query = select(Build).where(Build.workload_id == workload_id)
    if status in STATUS_GROUPS:
        query = query.where(Build.status.in_(sorted(STATUS_GROUPS[status])))
    if branch:
        query = query.where(Build.branch == branch)
    query = query.order_by(Build.created_at.desc(), Build.id.desc()).offset(offset)
    rows = list(session.scalars(query.limit(limit + 1)))
    return BuildPage(rows[:limit], len(rows) > limit)


def branches(session: Session, workload_id: int, limit: int = 50) -> list[str]:
    """Branches the workload's builds were made from, most recent first (the filter's list)."""
    query = (
        select(Build.branch, func.max(Build.created_at).label("last"))
        .where(Build.workload_id == workload_id, Build.branch.is_not(None))
        .group_by(Build.branch)
        .order_by(func.max(Build.created_at).desc())
        .limit(limit)
    )
    return [str(branch) for branch, _ in session.execute(query)]


def line_count(session: Session, build_id: str) -> int:
    """One more than the last line's sequence number (lines are numbered from 0)."""
    last = session.scalar(
        select(func.max(BuildLogLine.seq)).where(BuildLogLine.build_id == build_id)
    )
    return 0 if last is None else int(last) + 1


def lines_from(session: Session, build_id: str, first: int, count: int) -> list[BuildLogLine]:
    return list(
        session.scalars(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id, BuildLogLine.seq >= first)
            .order_by(BuildLogLine.seq)
            .limit(count)
        )
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session: Session, build_id: str, text: str, limit: int) -> list[BuildLogLine]:
    """Lines containing ``text`` (case-insensitive), in order; the database does the scan."""
    pattern = f"%{_escape_like(text)}%"
    return list(
        session.scalars(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id, BuildLogLine.line.ilike(pattern, escape="\\"))
            .order_by(BuildLogLine.seq)
            .limit(limit)
        )
    )


# The lines a summary reads (SQL LIKE: only % is special here); the rest stays in the database.
SUMMARY_PATTERNS: Sequence[str] = ("==> %", "STEP %", "[%] STEP %", "%Using cache%", "Queued: %")


def summary_lines(session: Session, build_id: str, limit: int = 5000) -> list[BuildLogLine]:
    return list(
        session.scalars(
            select(BuildLogLine)
            .where(
                BuildLogLine.build_id == build_id,
                or_(*(BuildLogLine.line.like(p) for p in SUMMARY_PATTERNS)),
            )
            .order_by(BuildLogLine.seq)
            .limit(limit)
        )
    )
