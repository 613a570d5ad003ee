"""Rows of inbound webhooks: the project's secret and the delivery records."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.store.models import ProjectWebhook, WebhookDelivery, Workload


def secret_row(session: Session, project_id: str) -> ProjectWebhook | None:
    return session.get(ProjectWebhook, project_id)


def delivery(
    session: Session, project_id: str, provider: str, delivery_id: str
) -> WebhookDelivery | None:
    return session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.project_id == project_id,
            WebhookDelivery.provider == provider,
            WebhookDelivery.delivery_id == delivery_id,
        )
    )


def deliveries_page(
    session: Session, project_id: str, *, limit: int, offset: int
) -> Sequence[WebhookDelivery]:
    """Newest first."""
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.project_id == project_id)
        .order_by(WebhookDelivery.received_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()


def project_workloads(session: Session, project_id: str) -> Sequence[Workload]:
    return session.scalars(
        select(Workload)
        .where(Workload.project_id == project_id, Workload.vcs_url.is_not(None))
        .order_by(Workload.entity, Workload.slug)
    ).all()
