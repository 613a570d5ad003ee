"""The project's inbound webhook secret: made (or rotated) through the API, shown once,
stored sealed."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from shipyard.store import webhooks as webhook_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import ProjectWebhook


def _context(project_id: str) -> str:
    return f"webhook-secret:{project_id}"


def rotate(session: Session, box: SecretBox, project_id: str) -> tuple[str, ProjectWebhook]:
    """A new secret replaces any earlier one (deliveries signed with that one then get 401).
    Returns the secret in clear: the only time it is shown. The caller commits."""
    value = secrets.token_urlsafe(32)
    row = webhook_store.secret_row(session, project_id)
    if row is None:
        row = ProjectWebhook(project_id=project_id)
        session.add(row)
    row.secret_enc = box.seal(value, _context(project_id))
    row.created_at = datetime.now(UTC)
    session.flush()
    return value, row


def current(session: Session, box: SecretBox, project_id: str) -> str | None:
    row = webhook_store.secret_row(session, project_id)
    return None if row is None else str(box.open(row.secret_enc, _context(project_id)))
