"""Webhook deliveries of a project, read through the API's own endpoint
(``GET /v1/projects/{p}/webhook/deliveries``) in-process, with the viewer's token. A server
without webhooks answers 404 ``endpoint-not-found``: the page then says there are none."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from shipyard.web.pages import page
from shipyard.web.viewer import CurrentViewer

router = APIRouter(include_in_schema=False)
PER_PAGE = 25


async def api_get(
    request: Request, token: str, path: str, params: dict[str, Any]
) -> httpx.Response:
    """One API call through the application itself (every rule and permission applies)."""
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shipyard.local") as client:
        return await client.get(
            path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


def _outcomes(value: Any) -> list[dict[str, str]]:
    """Per-service outcomes as ``[{service, outcome, build}]`` from either a list of objects
    or a mapping service -> outcome text."""
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict):
                name = entry.get("service") or entry.get("serviceId") or entry.get("workload") or ""
                items.append((str(name), entry))
    out = []
    for service, raw in items:
        if isinstance(raw, dict):
            text = raw.get("outcome") or raw.get("result") or raw.get("status") or ""
            build = raw.get("buildId")
            reason = raw.get("reason")
            if not text and build:
                text = f"started {build}"
            elif not text and reason:
                text = f"skipped: {reason}"
        else:
            text, build = str(raw), None
        text = str(text)
        if build is None and text.startswith("started "):
            build = text.removeprefix("started ").strip() or None
        out.append(
            {
                "service": service,
                "outcome": text,
                "build": str(build) if build else "",
                "started": "yes" if build or text.startswith("started") else "",
            }
        )
    return out


def _delivery(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(raw.get("id", "")),
        "provider": raw.get("provider", ""),
        "event": raw.get("event", ""),
        "repository": raw.get("repository", ""),
        "ref": raw.get("ref", ""),
        "before": raw.get("before", ""),
        "after": raw.get("after", ""),
        "received": raw.get("receivedAt") or raw.get("received") or raw.get("createdAt"),
        "outcomes": _outcomes(raw.get("outcomes", raw.get("services"))),
        "message": raw.get("message") or raw.get("error") or "",
    }


@router.get("/ui/projects/{projectId}/deliveries", response_class=HTMLResponse)
async def deliveries(
    request: Request,
    projectId: str,
    viewer: CurrentViewer,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    params: dict[str, Any] = {"per_page": PER_PAGE}
    if cursor:
        params["cursor"] = cursor
    response = await api_get(
        request, viewer.session.token, f"/v1/projects/{projectId}/webhook/deliveries", params
    )
    body: Any = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    error = body.get("error") if isinstance(body, dict) else None
    available = True
    items: list[dict[str, Any]] = []
    next_cursor = None
    if (
        response.status_code == 404
        and isinstance(error, dict)
        and error.get("id") == "endpoint-not-found"
    ):
        available, error = False, None  # this server has no webhooks yet
    elif response.status_code == 200:
        data = body.get("data")
        raw = data.get("deliveries", []) if isinstance(data, dict) else data
        items = [_delivery(d) for d in raw or [] if isinstance(d, dict)]
        pagination = body.get("pagination") or {}
        if pagination.get("hasNextPage"):
            next_cursor = pagination.get("cursor")
    return page(
        request,
        "deliveries.html",
        viewer,
        project_id=projectId,
        deliveries=items,
        available=available,
        error=error,
        next_cursor=next_cursor,
        first_page=cursor is None,
    )
