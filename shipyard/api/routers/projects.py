"""Projects: create and list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from shipyard.api.deps import DB, Caller, State
from shipyard.api.pagination import Page, encode_cursor, offset_of, pagination
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.api.schemas.resources import CreateProject
from shipyard.builds import lifecycle
from shipyard.builds.errors import Forbidden, InvalidRequest
from shipyard.builds.ids import slugify
from shipyard.builds.permissions import Permission
from shipyard.executors import base as executors
from shipyard.pipeline.mirror import MirrorStore
from shipyard.store import projects as project_store
from shipyard.store.models import Project

router = APIRouter(prefix="/v1/projects", tags=["projects"])


def project_out(project: Project) -> dict[str, Any]:
    # Optional strings are omitted when unset (Northflank's shape), never null.
    optional = {"description": project.description, "region": project.region}
    return {
        **project.spec,
        "id": project.id,
        "name": project.name,
        **{k: v for k, v in optional.items() if v is not None},
        "createdAt": iso_ms(project.created_at),
    }


@router.post("", summary="Create project", response_model=None)
def create_project(
    body: CreateProject, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(Permission.PROJECTS_CREATE)
    if caller.project_id is not None:
        raise Forbidden("a project-scoped token cannot create projects")
    project_id = slugify(body.name)
    if not project_id:
        raise InvalidRequest("name must contain at least one letter or digit", {"name": "invalid"})
    extra = body.model_dump(exclude={"name", "description", "region"}, exclude_none=True)
    project = project_store.create(
        session,
        project_id=project_id,
        name=body.name,
        description=body.description,
        region=body.region,
        spec=extra,
    )
    session.commit()
    state.executor.prepare(project.id)
    return envelope(project_out(project))


@router.get("", summary="List projects", response_model=None)
def list_projects(session: DB, caller: Caller, page: Page) -> dict[str, Any]:
    caller.require(Permission.PROJECTS_READ)
    offset = offset_of(page)
    scope = {caller.project_id} if caller.project_id is not None else None
    rows = project_store.list_page(
        session, offset=offset, limit=page.per_page + 1, project_ids=scope
    )
    data = {"projects": [project_out(p) for p in rows[: page.per_page]]}
    return envelope(
        data, pagination(len(rows), page.per_page, encode_cursor({"o": offset + page.per_page}))
    )


@router.delete("/{projectId}", summary="Delete project", response_model=None)
def delete_project(
    projectId: str,
    session: DB,
    caller: Caller,
    state: State,
    delete_child_objects: Annotated[
        bool, Query(description="Also delete its services and jobs (else 409 if any)")
    ] = False,
) -> dict[str, Any]:
    """Builds are stopped, the project's rows and sealed data erased, its build sandbox
    released; its images stay in the registry (deletes are disabled there)."""
    caller.require(Permission.PROJECTS_DELETE, projectId)
    running = lifecycle.delete_project(session, projectId, delete_children=delete_child_objects)
    session.commit()
    for build_id in running:
        state.executor.abort(build_id)
    executors.release(state.executor, projectId)
    # The project's git mirrors (shipyard.pipeline.mirror) go with it.
    MirrorStore(state.settings.data_dir / "mirrors").remove_project(projectId)
    return envelope({})


@router.get("/{projectId}", summary="Get project", response_model=None)
def get_project(projectId: str, session: DB, caller: Caller) -> dict[str, Any]:
    caller.require(Permission.PROJECTS_READ, projectId)
    return envelope(project_out(project_store.get(session, projectId)))
