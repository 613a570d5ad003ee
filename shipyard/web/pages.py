"""The dashboard's pages. Thin like the API's routers: each page checks the viewer's
permissions exactly as the API call it mirrors does, reads through the same stores and shapes
rows with the API's own serializers (``build_out``, ``workload_out``), then renders a template.
Changes are made by the pages' scripts through the API itself (``/ui/api/v1/…``)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from shipyard import __version__
from shipyard.api.auth import authenticate
from shipyard.api.deps import DB, State
from shipyard.api.routers.builds import build_out
from shipyard.api.routers.projects import project_out
from shipyard.api.routers.workloads import workload_out
from shipyard.builds import permissions
from shipyard.builds.errors import InvalidRequest, Unauthenticated
from shipyard.builds.permissions import Permission
from shipyard.store import builds as build_store
from shipyard.store import projects as project_store
from shipyard.store import workloads as workload_store
from shipyard.store.models import Workload
from shipyard.web import formatting, queries
from shipyard.web import session as web_session
from shipyard.web.build_summary import summarise
from shipyard.web.viewer import REASONS, CurrentViewer, Viewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(formatting.FILTERS)
templates.env.globals.update(trigger_of=formatting.trigger_of, version=__version__)

router = APIRouter(include_in_schema=False)

Segment = Literal["services", "jobs"]
ENTITY: dict[str, Literal["service", "job"]] = {"services": "service", "jobs": "job"}
PER_PAGE = 25
WEBHOOK_PROVIDERS = ("github", "gitlab", "gitea")


def page(request: Request, name: str, viewer: Viewer | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"viewer": viewer, "csrf": viewer.csrf if viewer else None, **context}
    )


def workload_url(project_id: str, workload: Workload) -> str:
    return f"/ui/projects/{project_id}/{workload.entity}s/{workload.slug}"


# --- signing in -------------------------------------------------------------------------


def _signin_page(request: Request, error: str | None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, "signin.html", None, form_csrf=token, error=error)
    response.status_code = status
    response.set_cookie(
        web_session.LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=web_session.secure(request),
        path="/",
    )
    return response


@router.get("/signin", response_model=None)
def signin_form(request: Request, state: State, reason: str | None = None) -> Response:
    if reason is None and web_session.from_request(state.box, request) is not None:
        return RedirectResponse("/", status_code=303)  # already signed in
    return _signin_page(request, REASONS.get(reason or ""))


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the sign-in and sign-out forms; small, bounded)."""
    body = await request.body()
    if len(body) > 16_384:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


@router.post("/signin", response_model=None)
async def signin(request: Request, state: State) -> Response:
    form = await _form(request)
    expected = request.cookies.get(web_session.LOGIN_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _signin_page(request, "The sign-in form expired: try again.", 403)
    token = form.get("token", "").strip()

    def check() -> None:
        with state.sessions() as session:
            authenticate(session, token or None, state.admin_token)

    try:
        await run_in_threadpool(check)
    except Unauthenticated:
        message = "Enter an API token." if not token else "That token is not valid."
        return _signin_page(request, message, 401)
    response = RedirectResponse("/", status_code=303)
    web_session.set_cookie(response, request, state.box, web_session.new_session(token))
    response.delete_cookie(
        web_session.LOGIN_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=web_session.secure(request),
    )
    return response


@router.post("/signout", response_model=None)
async def signout(request: Request, state: State) -> Response:
    form = await _form(request)
    signed_in = web_session.from_request(state.box, request)
    if signed_in is not None and not signed_in.csrf_matches(form.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse("/signin", status_code=303)
    web_session.clear_cookie(response, request)
    return response


# --- projects ---------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def projects(
    request: Request,
    viewer: CurrentViewer,
    session: DB,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    principal = viewer.principal
    rows: list[dict[str, Any]] = []
    has_next = False
    if principal.project_id is not None:
        # A project token sees its project only, whatever else exists.
        found = project_store.list_page(
            session, offset=0, limit=1, project_ids={principal.project_id}
        )
        rows = [project_out(p) for p in found]
    elif viewer.can(Permission.PROJECTS_READ, "-"):
        found = project_store.list_page(
            session, offset=(page_no - 1) * PER_PAGE, limit=PER_PAGE + 1, project_ids=None
        )
        has_next = len(found) > PER_PAGE
        rows = [project_out(p) for p in found[:PER_PAGE]]
    counts = queries.workload_counts(session, [p["id"] for p in rows])
    return page(
        request,
        "projects.html",
        viewer,
        projects=rows,
        counts=counts,
        page_no=page_no,
        has_next=has_next,
    )


@router.get("/ui/projects/{projectId}", response_class=HTMLResponse)
def project(request: Request, projectId: str, viewer: CurrentViewer, session: DB) -> HTMLResponse:
    if viewer.principal.project_id not in (None, projectId):
        viewer.principal.require(Permission.PROJECTS_READ, projectId)  # raises: other project
    found = project_out(project_store.get(session, projectId))
    if not viewer.can(Permission.PROJECTS_READ, projectId):
        # Its services or jobs may be listed, but not the project's own details (as the API).
        found = {"id": found["id"], "name": found["id"]}
    sections = []
    for entity in ("service", "job"):
        if not viewer.can(permissions.READ[entity], projectId):
            continue  # what the token may not see is not shown
        rows = workload_store.list_page(session, projectId, entity, offset=0, limit=200)
        items = []
        for workload in rows:
            latest = build_store.latest(session, workload.id)
            items.append(
                {
                    "workload": workload_out(workload),
                    "url": workload_url(projectId, workload),
                    "latest": build_out(latest) if latest is not None else None,
                }
            )
        sections.append({"entity": entity, "items": items})
    return page(
        request,
        "project.html",
        viewer,
        project=found,
        sections=sections,
        webhooks=webhook_urls(request, projectId),
    )


def webhook_urls(request: Request, project_id: str) -> list[tuple[str, str]]:
    base = str(request.base_url).rstrip("/")
    return [(p, f"{base}/v1/webhooks/{p}/{project_id}") for p in WEBHOOK_PROVIDERS]


# --- services and jobs ------------------------------------------------------------------


def _workload(
    session: DB, viewer: Viewer, project_id: str, segment: Segment, slug: str
) -> Workload:
    entity = ENTITY[segment]
    viewer.principal.require(permissions.READ[entity], project_id)
    return workload_store.get(session, project_id, entity, slug)


@router.get("/ui/projects/{projectId}/{segment}/{slug}", response_class=HTMLResponse)
def workload(
    request: Request,
    projectId: str,
    segment: Segment,
    slug: str,
    viewer: CurrentViewer,
    session: DB,
    status: Annotated[str | None, Query(max_length=32)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    found = _workload(session, viewer, projectId, segment, slug)
    status = status if status in queries.STATUS_GROUPS else None
    branch = branch or None
    result = queries.builds_page(
        session,
        found.id,
        status=status,
        branch=branch,
        offset=(page_no - 1) * PER_PAGE,
        limit=PER_PAGE,
    )
    base = workload_url(projectId, found)

    def link(page_to: int) -> str:
        params = {k: v for k, v in (("status", status), ("branch", branch)) if v}
        if page_to > 1:
            params["page"] = str(page_to)
        return base + ("?" + urlencode(params) if params else "")

    builds = [build_out(b) for b in result.builds]
    return page(
        request,
        "workload.html",
        viewer,
        project_id=projectId,
        segment=segment,
        entity=found.entity,
        workload=workload_out(found),
        base=base,
        builds=builds,
        any_running=any(not b["concluded"] for b in builds),
        status=status,
        branch=branch,
        branches=queries.branches(session, found.id),
        status_groups=list(queries.STATUS_GROUPS),
        page_no=page_no,
        prev_link=link(page_no - 1) if page_no > 1 else None,
        next_link=link(page_no + 1) if result.has_next else None,
        can_deploy=viewer.can(permissions.DEPLOY_BUILD[found.entity], projectId),
        can_update=viewer.can(permissions.UPDATE[found.entity], projectId),
        webhooks=webhook_urls(request, projectId) if found.entity == "service" else [],
    )


@router.get("/ui/projects/{projectId}/{segment}/{slug}/start", response_class=HTMLResponse)
def start_form(
    request: Request,
    projectId: str,
    segment: Segment,
    slug: str,
    viewer: CurrentViewer,
    session: DB,
) -> HTMLResponse:
    found = _workload(session, viewer, projectId, segment, slug)
    viewer.principal.require(permissions.DEPLOY_BUILD[found.entity], projectId)
    return page(
        request,
        "start.html",
        viewer,
        project_id=projectId,
        segment=segment,
        workload=workload_out(found),
        kind=found.kind,
        base=workload_url(projectId, found),
        api_path=f"/ui/api/v1/projects/{projectId}/{segment}/{slug}/build",
    )


@router.get("/ui/projects/{projectId}/{segment}/{slug}/settings", response_class=HTMLResponse)
def settings_form(
    request: Request,
    projectId: str,
    segment: Segment,
    slug: str,
    viewer: CurrentViewer,
    session: DB,
) -> HTMLResponse:
    found = _workload(session, viewer, projectId, segment, slug)
    viewer.principal.require(permissions.UPDATE[found.entity], projectId)
    return page(
        request,
        "settings.html",
        viewer,
        project_id=projectId,
        segment=segment,
        workload=workload_out(found),
        base=workload_url(projectId, found),
        api_path=f"/ui/api/v1/projects/{projectId}/{segment}/{found.kind}/{slug}",
    )


# --- one build ----------------------------------------------------------------------------


def _build(
    session: DB, viewer: Viewer, project_id: str, segment: Segment, slug: str, build_id: str
) -> tuple[Workload, Any]:
    entity = ENTITY[segment]
    viewer.principal.require(permissions.GET_BUILD[entity], project_id)
    found = workload_store.get(session, project_id, entity, slug)
    return found, build_store.get(session, found.id, build_id)


def _summary_context(session: DB, row: Any) -> dict[str, Any]:
    lines = queries.summary_lines(session, row.id)
    summary = summarise(
        ((r.seq, r.ts, r.line) for r in lines),
        created=row.created_at,
        concluded=row.concluded_at,
        status=row.status,
    )
    return {"summary": summary, "build": build_out(row)}


@router.get(
    "/ui/projects/{projectId}/{segment}/{slug}/builds/{buildId}", response_class=HTMLResponse
)
def build_page(
    request: Request,
    projectId: str,
    segment: Segment,
    slug: str,
    buildId: str,
    viewer: CurrentViewer,
    session: DB,
) -> HTMLResponse:
    found, row = _build(session, viewer, projectId, segment, slug, buildId)
    base = workload_url(projectId, found)
    api = f"/ui/api/v1/projects/{projectId}/{segment}/{slug}"
    return page(
        request,
        "build.html",
        viewer,
        project_id=projectId,
        segment=segment,
        workload=workload_out(found),
        base=base,
        here=f"{base}/builds/{row.id}",
        api=api,
        can_logs=viewer.can(permissions.READ_LOGS[found.entity], projectId),
        can_deploy=viewer.can(permissions.DEPLOY_BUILD[found.entity], projectId),
        **_summary_context(session, row),
    )


@router.get(
    "/ui/projects/{projectId}/{segment}/{slug}/builds/{buildId}/summary",
    response_class=HTMLResponse,
)
def build_summary(
    request: Request,
    projectId: str,
    segment: Segment,
    slug: str,
    buildId: str,
    viewer: CurrentViewer,
    session: DB,
) -> HTMLResponse:
    """The part of the build page that changes while it runs (htmx polls it)."""
    found, row = _build(session, viewer, projectId, segment, slug, buildId)
    base = workload_url(projectId, found)
    return page(
        request,
        "build_summary.html",
        viewer,
        project_id=projectId,
        base=base,
        here=f"{base}/builds/{row.id}",
        api=f"/ui/api/v1/projects/{projectId}/{segment}/{slug}",
        can_deploy=viewer.can(permissions.DEPLOY_BUILD[found.entity], projectId),
        **_summary_context(session, row),
    )


MAX_PAGE_LINES = 2000


@router.get("/ui/projects/{projectId}/{segment}/{slug}/builds/{buildId}/log")
def log_page(
    projectId: str,
    segment: Segment,
    slug: str,
    buildId: str,
    viewer: CurrentViewer,
    session: DB,
    start: Annotated[int | None, Query(alias="from", ge=0, le=2**62)] = None,
    count: Annotated[int, Query(ge=1, le=MAX_PAGE_LINES)] = 1000,
    tail: Annotated[int | None, Query(ge=1, le=MAX_PAGE_LINES)] = None,
) -> dict[str, Any]:
    """A page of the log by line number (0-based ``from``), or its last ``tail`` lines; with
    the total, so the viewer can page through any length without loading it."""
    entity = ENTITY[segment]
    viewer.principal.require(permissions.READ_LOGS[entity], projectId)
    found = workload_store.get(session, projectId, entity, slug)
    row = build_store.get(session, found.id, buildId)
    total = queries.line_count(session, row.id)
    if tail is not None:
        first, count = max(0, total - tail), tail
    elif start is not None:
        first = start
    else:
        raise InvalidRequest("give from or tail", {"from": "required"})
    lines = queries.lines_from(session, row.id, first, count)
    return {
        "total": total,
        "concluded": row.concluded,
        "lines": [{"n": r.seq, "ts": formatting.iso(r.ts), "log": r.line} for r in lines],
    }


@router.get("/ui/projects/{projectId}/{segment}/{slug}/builds/{buildId}/log/search")
def log_search(
    projectId: str,
    segment: Segment,
    slug: str,
    buildId: str,
    viewer: CurrentViewer,
    session: DB,
    q: Annotated[str, Query(min_length=1, max_length=256)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    entity = ENTITY[segment]
    viewer.principal.require(permissions.READ_LOGS[entity], projectId)
    found = workload_store.get(session, projectId, entity, slug)
    row = build_store.get(session, found.id, buildId)
    hits = queries.search(session, row.id, q, limit + 1)
    return {
        "matches": [{"n": r.seq, "log": r.line} for r in hits[:limit]],
        "more": len(hits) > limit,
    }
