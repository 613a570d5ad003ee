"""Deleting services, jobs and projects, and resetting a workload's build cache.

A delete stops the workload's builds first (a queued build concludes ABORTED at once, a
running one gets its abort flag, as ``DELETE …/build/{id}`` does), then erases the rows: the
workload, its builds, their logs, and with them every sealed value (build arguments, files,
secret mounts, repository credentials, bundle URLs). Images stay in the registry, whose
deletes are disabled (docs/api.md). Callers commit, then tell the executor: ``abort`` for each
returned build id, and ``release`` for a deleted project.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shipyard.builds.errors import Conflict
from shipyard.builds.status import BuildStatus
from shipyard.store import builds as build_store
from shipyard.store import projects as project_store
from shipyard.store import workloads as workload_store
from shipyard.store.models import Workload


def _stop_builds(session: Session, workload_ids: list[int]) -> list[str]:
    """Abort every unconcluded build; returns the ids a worker has to stop."""
    running: list[str] = []
    for build in build_store.unconcluded(session, workload_ids):
        if build_store.conclude_if_waiting(session, build.id, BuildStatus.ABORTED, "Deleted"):
            continue
        build_store.request_abort(session, build.id)
        running.append(build.id)
    return running


def delete_workload(session: Session, workload: Workload) -> list[str]:
    ids = [workload.id]
    running = _stop_builds(session, ids)
    build_store.delete_for(session, ids)
    workload_store.delete_rows(session, ids)
    return running


def delete_project(session: Session, project_id: str, *, delete_children: bool) -> list[str]:
    """Northflank refuses to delete a project that still has services or jobs unless
    ``delete_child_objects`` is set (409, its documented answer)."""
    project_store.get(session, project_id)
    ids = workload_store.ids_in_project(session, project_id)
    if ids and not delete_children:
        raise Conflict(
            f"project '{project_id}' still has {len(ids)} service(s) or job(s); delete them "
            "first or pass delete_child_objects=true",
            {"delete_child_objects": "required"},
            slug="project-not-empty",
        )
    running = _stop_builds(session, ids)
    build_store.delete_for(session, ids)
    workload_store.delete_rows(session, ids)
    project_store.delete_row(session, project_id)
    return running


def reset_cache(session: Session, workload: Workload) -> None:
    """The next build of the workload must not reuse an earlier image (the executor's
    ``reset_cache`` drops the layer cache)."""
    build_store.forget_reuse(session, workload.id)
