"""Webhook deliveries of a project, read through the API's own endpoint
(``GET /v1/projects/{p}/webhook/deliveries``) in-process, with the viewer's token. A server
without webhooks answers 404 ``endpoint-not-found``: the page then says there are none."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from shipyard.web.pages import page, webhook_urls
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


def _outcome(entry: Any) -> dict[str, str]:
    """One service's or job's outcome: ``{"entity", "id", "outcome": "started"|"skipped",
    "buildId"?, "reason"?, "text"?}`` (the webhooks API), read leniently."""
    if not isinstance(entry, dict):
        return {"entity": "service", "name": "", "text": str(entry), "build": ""}
    build = entry.get("buildId") or ""
    text = entry.get("text")
    if not text:
        started = entry.get("outcome") == "started" or build
        reason = entry.get("reason", "no reason given")
        text = f"started {build}" if started else f"skipped: {reason}"
    entity = "job" if entry.get("entity") == "job" else "service"
    name = entry.get("id") or entry.get("service") or entry.get("serviceId") or ""
    return {"entity": entity, "name": str(name), "text": str(text), "build": str(build)}


def _delivery(raw: dict[str, Any]) -> dict[str, Any]:
    results = raw.get("results", raw.get("outcomes")) or []
    return {
        "id": str(raw.get("id", "")),
        "provider": raw.get("provider", ""),
        "event": raw.get("event", ""),
        "action": raw.get("action", ""),
        "repository": raw.get("repository", ""),
        "ref": raw.get("ref", ""),
        "pull_request": raw.get("pullRequestId"),
        "before": raw.get("before", ""),
        "after": raw.get("after", ""),
        "received": raw.get("receivedAt") or raw.get("createdAt"),
        "note": raw.get("note") or "",
        "outcomes": [_outcome(e) for e in results] if isinstance(results, list) else [],
    }


def _json(response: httpx.Response) -> Any:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return {}
    return response.json()


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
    body: Any = _json(response)
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
    # Whether the project has a webhook secret (GET …/webhook); unknown on older servers.
    configured = None
    if available and error is None:
        hook = await api_get(request, viewer.session.token, f"/v1/projects/{projectId}/webhook", {})
        data = _json(hook).get("data") if hook.status_code == 200 else None
        if isinstance(data, dict):
            configured = bool(data.get("configured"))
    shown = page(
        request,
        "deliveries.html",
        viewer,
        project_id=projectId,
        deliveries=items,
        available=available,
        error=error,
        next_cursor=next_cursor,
        first_page=cursor is None,
        configured=configured,
        webhooks=webhook_urls(request, projectId),
    )
    if error is not None and response.status_code >= 400:
        # The API's refusal (403 for another project's page, 404): the page says so too.
        shown.status_code = response.status_code
    return shown
