"""Outbound notifications of a project: ``GET/POST …/notifications``,
``DELETE …/notifications/{id}``, and the record of every attempt
(``GET …/notifications/deliveries``). docs/webhooks.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import StringConstraints
from sqlalchemy import select

from shipyard.api.deps import DB, Caller, State
from shipyard.api.pagination import MAX_DB_INT, Page, encode_cursor, offset_of, pagination
from shipyard.api.routers.webhooks import READ, SECRET_UPDATE
from shipyard.api.schemas.common import Strict, envelope, iso_ms
from shipyard.notify import endpoints
from shipyard.store import projects as project_store
from shipyard.store.models import NotificationDelivery, NotificationEndpoint

router = APIRouter(prefix="/v1/projects/{projectId}/notifications", tags=["notifications"])


class EndpointBody(Strict):
    url: Annotated[str, StringConstraints(min_length=8, max_length=endpoints.MAX_URL_CHARS)]
    onStart: bool = False


def endpoint_out(row: NotificationEndpoint) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "onStart": row.on_start,
            "createdAt": iso_ms(row.created_at)}  # fmt: skip


@router.get("", summary="List notification URLs")
def list_endpoints(projectId: str, session: DB, caller: Caller) -> dict[str, Any]:
    caller.require(READ, projectId)
    project_store.get(session, projectId)
    return envelope(
        {"endpoints": [endpoint_out(r) for r in endpoints.list_for(session, projectId)]}
    )


@router.post("", summary="Add a notification URL (its secret is shown once)")
def add_endpoint(
    projectId: str, body: EndpointBody, session: DB, caller: Caller, state: State
) -> dict[str, Any]:
    caller.require(SECRET_UPDATE, projectId)
    project_store.get(session, projectId)
    settings = state.settings
    row, secret = endpoints.create(
        session, state.box, projectId, body.url, body.onStart,
        allow_private=settings.notify_allow_private_urls,
        allowed_networks=tuple(settings.build_allowed_networks),
    )  # fmt: skip
    session.commit()
    return envelope({**endpoint_out(row), "secret": secret})


@router.delete("/{endpointId}", summary="Remove a notification URL")
def delete_endpoint(
    projectId: str,
    endpointId: Annotated[int, Path(ge=1, le=MAX_DB_INT)],
    session: DB,
    caller: Caller,
) -> dict[str, Any]:
    caller.require(SECRET_UPDATE, projectId)
    row = endpoints.get(session, projectId, endpointId)
    session.delete(row)
    session.commit()
    return envelope({"id": endpointId, "deleted": True})


@router.get("/deliveries", summary="List notification deliveries and their attempts")
def list_notification_deliveries(
    projectId: str, session: DB, caller: Caller, page: Page
) -> dict[str, Any]:
    caller.require(READ, projectId)
    project_store.get(session, projectId)
    offset = offset_of(page)
    rows = session.scalars(
        select(NotificationDelivery)
        .join(NotificationEndpoint, NotificationEndpoint.id == NotificationDelivery.endpoint_id)
        .where(NotificationEndpoint.project_id == projectId)
        .order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
        .limit(page.per_page + 1)
        .offset(offset)
    ).all()
    shown = [
        {
            "id": r.id,
            "endpointId": r.endpoint_id,
            "buildId": r.build_id,
            "event": r.event,
            "state": r.state,
            "createdAt": iso_ms(r.created_at),
            **({"nextAt": iso_ms(r.next_at)} if r.state == "pending" else {}),
            "attempts": r.attempts,
        }
        for r in rows[: page.per_page]
    ]
    return envelope(
        {"deliveries": shown},
        pagination(len(rows), page.per_page, encode_cursor({"o": offset + page.per_page})),
    )
