"""Which queued build runs next, and what each other queued build waits on.

Pure policy (no database): the store reads a snapshot of queued and running builds, this
module orders and explains them, and the store's conditional UPDATE re-checks the limits
when a worker claims (``shipyard.store.queue``).

The rules (README, "Fairness and limits"):

* **Round robin across projects.** The next build comes from the project with the fewest
  builds running; among equals, the project whose oldest queued build has waited longest.
  Within a project builds go oldest first. So a project that queued 40 builds gets one slot
  after another only while nobody else waits: a build of another project goes next.
* **Global limit** (``SHIPYARD_MAX_CONCURRENT_BUILDS``): running builds across every worker.
* **Project limit** (``SHIPYARD_PROJECT_MAX_RUNNING``): running builds of one project.
* **One build per service at a time** (``SHIPYARD_SERVICE_MAX_RUNNING``, default 1), as
  Northflank builds one commit per service at a time: later builds of the service (or job)
  wait, in order, and run once the current one concludes.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

QUEUED_PREFIX = "Queued: "  # shipyard/cli/follow.py reads this prefix


@dataclass(frozen=True)
class Limits:
    """How many builds may run at once: in all (``global_max``), per project (None = only
    the global limit applies) and per service or job (0 = no limit)."""

    global_max: int
    project_max: int | None = None
    service_max: int = 1

    def __post_init__(self) -> None:
        if self.global_max < 1:
            raise ValueError("the global limit of running builds must be at least 1")
        if self.project_max is not None and self.project_max < 1:
            raise ValueError("the project limit of running builds must be at least 1")
        if self.service_max < 0:
            raise ValueError("the service limit of running builds must be 0 (none) or more")


@dataclass(frozen=True)
class Waiting:
    """A QUEUED build."""

    build_id: str
    project_id: str
    workload_id: int
    workload: str  # the service's or job's slug, for messages
    entity: str  # "service" | "job"
    created_at: datetime
    attempt: int = 0


@dataclass(frozen=True)
class Running:
    """A build some worker holds (STARTING … UPLOADING)."""

    build_id: str
    project_id: str
    workload_id: int


@dataclass(frozen=True)
class Place:
    """Where a queued build stands: ``position`` of ``total`` in the order builds will be
    started, and what it waits on (``blocked_by`` None: the limits let it start now)."""

    build: Waiting
    position: int
    total: int
    blocked_by: str | None

    def notice(self, reason: str) -> str:
        """The build's log line: ``Queued: position P of N; <what it waits on>``."""
        return f"{QUEUED_PREFIX}position {self.position} of {self.total}; {reason}"


def order(waiting: Sequence[Waiting], running: Sequence[Running]) -> list[Waiting]:
    """Every queued build in the order the policy would start them if no limit applied:
    round robin across projects by fewest running, then oldest waiting."""
    per_project: dict[str, list[Waiting]] = defaultdict(list)
    for build in sorted(waiting, key=lambda b: (b.created_at, b.build_id)):
        per_project[build.project_id].append(build)
    busy = Counter(r.project_id for r in running)
    heads = [
        (busy[project], builds[0].created_at, builds[0].build_id, project, 0)
        for project, builds in per_project.items()
    ]
    heapq.heapify(heads)
    ordered: list[Waiting] = []
    while heads:
        count, _, _, project, index = heapq.heappop(heads)
        builds = per_project[project]
        ordered.append(builds[index])
        if index + 1 < len(builds):
            following = builds[index + 1]
            heapq.heappush(
                heads, (count + 1, following.created_at, following.build_id, project, index + 1)
            )
    return ordered


def plan(waiting: Sequence[Waiting], running: Sequence[Running], limits: Limits) -> list[Place]:
    """The queue in start order, each build with what (if anything) keeps it from starting
    now. The first place with ``blocked_by`` None is the build to claim next."""
    by_project = Counter(r.project_id for r in running)
    by_service: dict[int, list[str]] = defaultdict(list)
    for r in running:
        by_service[r.workload_id].append(r.build_id)
    total = len(waiting)
    return [
        Place(build, position, total, _blocked_by(build, running, limits, by_project, by_service))
        for position, build in enumerate(order(waiting, running), start=1)
    ]


def _blocked_by(
    build: Waiting,
    running: Sequence[Running],
    limits: Limits,
    by_project: Counter[str],
    by_service: dict[int, list[str]],
) -> str | None:
    holding = sorted(by_service.get(build.workload_id, []))
    if limits.service_max and len(holding) >= limits.service_max:
        return f"{build.entity} {build.workload} is already building {', '.join(holding)}"
    if limits.project_max is not None and by_project[build.project_id] >= limits.project_max:
        return (
            f"project limit: {by_project[build.project_id]} of {limits.project_max} builds "
            f"of project {build.project_id} running"
        )
    if len(running) >= limits.global_max:
        return slot_reason(len(running), limits)
    return None


def slot_reason(running: int, limits: Limits) -> str:
    """What a build waits on when the limits allow it but no slot is free for it: the
    global limit is reached, or the worker's free slots went to builds ahead of it."""
    return f"waiting for a free build slot ({running} of {limits.global_max} running)"


def waits_on(reason: str) -> str:
    """What a reason says the build waits on, without the details that change while it
    waits (counts, the build holding its service): ``service web``, ``project limit``,
    ``waiting for a free build slot``. A new notice is written only when this changes."""
    for marker in (" is already building", ":", " ("):
        if marker in reason:
            return reason.split(marker, 1)[0]
    return reason
