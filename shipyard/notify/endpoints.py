"""A project's notification endpoints: URLs checked, secrets made here, shown once, sealed."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.builds.errors import InvalidRequest, NotFound
from shipyard.pipeline.errors import SourceError
from shipyard.pipeline.remote_policy import RemotePin, check_remote
from shipyard.store.crypto import SecretBox
from shipyard.store.models import NotificationEndpoint

MAX_URL_CHARS = 2048
MAX_ENDPOINTS = 16
ALLOW_SETTING = "SHIPYARD_NOTIFY_ALLOW_PRIVATE_URLS=true allows them"


def secret_context(endpoint_id: int) -> str:
    return f"notification-secret:{endpoint_id}"


def check_url(
    url: str, *, allow_private: bool, allowed_networks: Sequence[str] = ()
) -> RemotePin | None:
    """http(s) with a host, no credentials; the host must resolve to public addresses
    unless private ones are allowed (the sandbox's address policy). Returns the checked
    addresses, the only ones a request may then connect to (``notify.send``; None when
    private URLs are allowed). Raises ``SourceError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError("the notification URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise SourceError("the notification URL must not carry credentials")
    return check_remote(url, allow_private=allow_private, allowed_networks=allowed_networks,
                        noun="notification", setting=ALLOW_SETTING)  # fmt: skip


def create(
    session: Session,
    box: SecretBox,
    project_id: str,
    url: str,
    on_start: bool,
    *,
    allow_private: bool,
    allowed_networks: Sequence[str] = (),
) -> tuple[NotificationEndpoint, str]:
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(f"url is longer than {MAX_URL_CHARS} characters", {"url": "too long"})
    try:
        check_url(url, allow_private=allow_private, allowed_networks=allowed_networks)
    except SourceError as exc:
        raise InvalidRequest(exc.message, {"url": "refused"}) from None
    if len(list_for(session, project_id)) >= MAX_ENDPOINTS:
        raise InvalidRequest(f"a project may have at most {MAX_ENDPOINTS} notification URLs")
    value = secrets.token_urlsafe(32)
    row = NotificationEndpoint(project_id=project_id, url=url, on_start=on_start,
                               secret_enc=b"", created_at=datetime.now(UTC))  # fmt: skip
    session.add(row)
    session.flush()
    row.secret_enc = box.seal(value, secret_context(row.id))
    return row, value


def list_for(session: Session, project_id: str) -> Sequence[NotificationEndpoint]:
    return session.scalars(
        select(NotificationEndpoint)
        .where(NotificationEndpoint.project_id == project_id)
        .order_by(NotificationEndpoint.id)
    ).all()


def get(session: Session, project_id: str, endpoint_id: int) -> NotificationEndpoint:
    row = session.get(NotificationEndpoint, endpoint_id)
    if row is None or row.project_id != project_id:
        raise NotFound(f"notification endpoint {endpoint_id} not found")
    return row
