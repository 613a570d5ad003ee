"""API tokens: only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shipyard.store.models import ApiToken

TOKEN_PREFIX = "sy_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    session: Session, *, name: str, permissions: list[str], project_id: str | None
) -> tuple[ApiToken, str]:
    """Returns the row and the token in clear, which is shown once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=hash_token(token),
        permissions=sorted(set(permissions)),
        project_id=project_id,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row, token


def find(session: Session, token: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke(session: Session, token_id: int) -> bool:
    """Deletes the row: every request looks its token up afresh, so the next one fails.
    Returns whether there was such a token."""
    result = session.execute(delete(ApiToken).where(ApiToken.id == token_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
