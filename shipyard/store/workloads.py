"""Queries about services and jobs (both are "workloads": things Shipyard builds images for)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.builds.errors import Conflict, NotFound, not_found_slug
from shipyard.store.models import Workload


def create(session: Session, workload: Workload) -> Workload:
    workload.created_at = datetime.now(UTC)
    session.add(workload)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            f"a {workload.entity} with id '{workload.slug}' already exists in project "
            f"'{workload.project_id}'",
            {"name": workload.name},
        ) from exc
    return workload


def get(session: Session, project_id: str, entity: str, slug: str) -> Workload:
    workload = session.scalar(
        select(Workload).where(
            Workload.project_id == project_id, Workload.entity == entity, Workload.slug == slug
        )
    )
    if workload is None:
        raise NotFound(
            f"{entity} '{slug}' not found in project '{project_id}'", slug=not_found_slug(entity)
        )
    return workload


def get_by_id(session: Session, workload_id: int) -> Workload:
    workload = session.get(Workload, workload_id)
    if workload is None:
        raise NotFound(f"workload {workload_id} not found", slug=not_found_slug("workload"))
    return workload


def list_page(
    session: Session, project_id: str, entity: str, *, offset: int, limit: int
) -> list[Workload]:
    query = (
        select(Workload)
        .where(Workload.project_id == project_id, Workload.entity == entity)
        .order_by(Workload.created_at.desc(), Workload.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(query))


def ids_in_project(session: Session, project_id: str) -> list[int]:
    return list(session.scalars(select(Workload.id).where(Workload.project_id == project_id)))


def delete_rows(session: Session, workload_ids: list[int]) -> None:
    """Delete workload rows (their sealed build arguments and repository credentials go with
    them). Their builds must have been deleted first (``store.builds.delete_for``)."""
    if workload_ids:
        session.execute(delete(Workload).where(Workload.id.in_(workload_ids)))


def find(session: Session, project_id: str, entity: str, slug: str) -> Workload | None:
    return session.scalar(
        select(Workload).where(
            Workload.project_id == project_id, Workload.entity == entity, Workload.slug == slug
        )
    )
