"""Queries about projects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.builds.errors import Conflict, NotFound, not_found_slug
from shipyard.store.models import Project


def create(
    session: Session,
    *,
    project_id: str,
    name: str,
    description: str | None,
    region: str | None,
    spec: dict[str, Any],
) -> Project:
    project = Project(
        id=project_id,
        name=name,
        description=description,
        region=region,
        spec=spec,
        created_at=datetime.now(UTC),
    )
    session.add(project)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a project with id '{project_id}' already exists", {"name": name}) from exc
    return project


def get(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project '{project_id}' not found", slug=not_found_slug("project"))
    return project


def list_page(
    session: Session, *, offset: int, limit: int, project_ids: set[str] | None
) -> list[Project]:
    query = select(Project).order_by(Project.created_at.desc(), Project.id)
    if project_ids is not None:
        query = query.where(Project.id.in_(project_ids))
    return list(session.scalars(query.offset(offset).limit(limit)))


def delete_row(session: Session, project_id: str) -> None:
    """Delete the project row; its workloads must have been deleted first."""
    session.execute(delete(Project).where(Project.id == project_id))
