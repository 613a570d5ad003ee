"""Bearer tokens: the bootstrap admin token (every permission) or a stored API token."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shipyard.builds.errors import Forbidden, Unauthenticated
from shipyard.builds.permissions import ALL, Permission
from shipyard.store import tokens as token_store


@dataclass(frozen=True)
class Principal:
    name: str
    permissions: frozenset[str]
    project_id: str | None  # None: every project
    admin: bool = False  # the bootstrap admin token: the only one that manages tokens

    def require(
        self, permission: Permission | Sequence[Permission], project_id: str | None = None
    ) -> None:
        """``permission``: one name, or alternatives of which one suffices (the names both
        client generations use for the call; the first is the one cited)."""
        wanted = (permission,) if isinstance(permission, Permission) else tuple(permission)
        if not any(p in self.permissions for p in wanted):
            others = [p.value for p in wanted[1:]]
            also = f" (or one of: {', '.join(repr(o) for o in others)})" if others else ""
            raise Forbidden(
                f"token lacks the permission '{wanted[0].value}'{also}",
                {"permission": wanted[0].value, **({"alternatives": others} if others else {})},
            )
        if project_id is not None and self.project_id is not None and project_id != self.project_id:
            raise Forbidden(f"token is scoped to another project than '{project_id}'")

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("only the admin token may list or revoke API tokens")


_ADMIN = Principal("admin", frozenset(p.value for p in ALL), None, admin=True)


def admin_principal() -> Principal:
    return _ADMIN


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_admin_token(token: str, admin_token: str) -> bool:
    return hmac.compare_digest(token.encode(), admin_token.encode())


def authenticate(session: Session, token: str | None, admin_token: str) -> Principal:
    if token is None:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    if is_admin_token(token, admin_token):
        return admin_principal()
    row = token_store.find(session, token)
    if row is None:
        raise Unauthenticated("unknown API token")
    return Principal(row.name, frozenset(row.permissions), row.project_id)
