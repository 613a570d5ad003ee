"""Inbound webhooks: ``POST /v1/webhooks/{github|gitlab|gitea}/{projectId}`` (no bearer token:
the provider's signature is the proof), the project's secret (``GET/POST …/webhook``) and the
delivery records (``GET …/webhook/deliveries``). docs/webhooks.md."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import DB, AppState, Caller, State
from shipyard.api.errors import error_response
from shipyard.api.guards import slots
from shipyard.api.pagination import Page, encode_cursor, offset_of, pagination
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.builds.errors import TooManyRequests
from shipyard.builds.permissions import Permission
from shipyard.pipeline.mirror import MirrorStore
from shipyard.store import projects as project_store
from shipyard.store import webhooks as webhook_store
from shipyard.store.models import WebhookDelivery
from shipyard.webhooks import secret
from shipyard.webhooks.counters import Rejections
from shipyard.webhooks.events import BadPayload
from shipyard.webhooks.receive import Rejected, WebhookSettings, receive
from shipyard.webhooks.signatures import Provider

router = APIRouter(tags=["webhooks"])

# A delivery's body must arrive within this: a slow sender cannot keep one of the
# SHIPYARD_WEBHOOK_MAX_CONCURRENT places for long.
WEBHOOK_BODY_TIMEOUT_S = 30.0

# Making or rotating the secret is a secrets write; reading whether one exists, or the
# deliveries, needs only read access to the project's services or jobs.
SECRET_UPDATE = (Permission.SERVICE_SECRETS_UPDATE, Permission.JOB_SECRETS_UPDATE)
READ = (Permission.SERVICES_READ, Permission.JOBS_READ)


def rejections(request: Request) -> Rejections:
    counter: Rejections | None = getattr(request.app.state, "webhook_rejections", None)
    if counter is None:
        counter = request.app.state.webhook_rejections = Rejections()
    return counter


def webhook_settings(state: AppState) -> WebhookSettings:
    s = state.settings
    return WebhookSettings(
        box=state.box,
        mirrors=MirrorStore(s.data_dir / "mirrors") if s.git_mirrors else None,
        allow_private_urls=s.allow_private_urls,
        allowed_networks=tuple(s.build_allowed_networks),
        allowed_local_roots=tuple(s.allowed_local_roots),
        git_timeout_s=min(s.git_timeout_s, 120.0),
        supersede_queued=s.webhook_supersede_queued,
        max_queued=s.max_queued_builds_per_project,
    )


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v1/webhooks/{provider}/{projectId}", summary="Receive a webhook delivery")
async def receive_delivery(
    provider: Provider, projectId: str, request: Request, state: State
) -> Any:
    cap = state.settings.webhook_max_concurrent
    handling = slots(request.app, "webhooks")
    # Before the body is read: bounds the memory bodies take (cap x the body limit) and the
    # worker threads deliveries hold; a body must arrive within WEBHOOK_BODY_TIMEOUT_S.
    handling.acquire("all", cap, _busy(cap))
    try:
        return await _handle(provider, projectId, request, state)
    finally:
        handling.release("all")


def _busy(cap: int) -> TooManyRequests:
    return TooManyRequests(
        f"{cap} webhook deliveries are being handled already (SHIPYARD_WEBHOOK_MAX_CONCURRENT); "
        "retry shortly",
        {"maxConcurrent": cap},
        retry_after_s=2,
    )


async def _handle(provider: Provider, projectId: str, request: Request, state: AppState) -> Any:
    limit = state.settings.webhook_max_body_bytes
    try:
        async with asyncio.timeout(WEBHOOK_BODY_TIMEOUT_S):
            body = await _bounded_body(request, limit)
    except TimeoutError:
        return error_response(
            408, f"the webhook body did not arrive within {WEBHOOK_BODY_TIMEOUT_S:g} s",
            slug="request-timeout",
        )  # fmt: skip
    if body is None:
        return error_response(
            413, f"webhook body larger than {limit} bytes", slug="payload-too-large"
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        received = await run_in_threadpool(
            receive, state.sessions, webhook_settings(state), provider, projectId, headers, body,
            state.executor.submit,
        )  # fmt: skip
    except Rejected as exc:
        rejections(request).add(provider.value, exc.reason)
        return error_response(401, exc.message, slug="unauthenticated")
    except BadPayload as exc:
        return error_response(400, f"unreadable {provider.value} delivery: {exc}",
                              slug="invalid-request")  # fmt: skip
    data = delivery_out(received.delivery)
    data["duplicate"] = received.duplicate
    if received.delivery.note == "ping answered":
        data["ping"] = "pong"
    return JSONResponse(envelope(data))


def delivery_out(row: WebhookDelivery) -> dict[str, Any]:
    results = []
    for entry in row.results or []:
        shown = dict(entry)
        shown["text"] = (
            f"started {entry.get('buildId')}"
            if entry.get("outcome") == "started"
            else f"skipped: {entry.get('reason')}"
        )
        results.append(shown)
    optional = {
        "action": row.action,
        "repository": row.repository,
        "ref": row.ref,
        "before": row.before,
        "after": row.after,
        "pullRequestId": row.pull_request_id,
        "note": row.note,
        "diff": row.diff_basis,
    }
    return {
        "id": row.delivery_id,
        "provider": row.provider,
        "event": row.event,
        "receivedAt": iso_ms(row.received_at),
        "state": row.state,
        **{k: v for k, v in optional.items() if v is not None},
        "results": results,
    }


def _urls(request: Request, project_id: str) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    return {p.value: f"{base}/v1/webhooks/{p.value}/{project_id}" for p in Provider}


@router.get("/v1/projects/{projectId}/webhook", summary="Get the project's webhook")
def get_webhook(projectId: str, request: Request, session: DB, caller: Caller) -> dict[str, Any]:
    caller.require(READ, projectId)
    project_store.get(session, projectId)
    row = webhook_store.secret_row(session, projectId)
    data: dict[str, Any] = {"configured": row is not None, "urls": _urls(request, projectId)}
    if row is not None:
        data["createdAt"] = iso_ms(row.created_at)
    return envelope(data)


@router.post("/v1/projects/{projectId}/webhook", summary="Create or rotate the webhook secret")
def rotate_webhook(
    projectId: str, request: Request, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(SECRET_UPDATE, projectId)
    project_store.get(session, projectId)
    value, row = secret.rotate(session, state.box, projectId)
    session.commit()
    return envelope(
        {
            "configured": True,
            "secret": value,  # shown this once; stored sealed
            "createdAt": iso_ms(row.created_at),
            "urls": _urls(request, projectId),
        }
    )


@router.get("/v1/projects/{projectId}/webhook/deliveries", summary="List webhook deliveries")
def list_deliveries(projectId: str, session: DB, caller: Caller, page: Page) -> dict[str, Any]:
    caller.require(READ, projectId)
    project_store.get(session, projectId)
    offset = offset_of(page)
    rows = webhook_store.deliveries_page(session, projectId, limit=page.per_page + 1, offset=offset)
    shown = rows[: page.per_page]
    return envelope(
        {"deliveries": [delivery_out(r) for r in shown]},
        pagination(len(rows), page.per_page, encode_cursor({"o": offset + page.per_page})),
    )
