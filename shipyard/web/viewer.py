"""Who is looking at a page: the session's token, authenticated exactly as the API does it
(the same Principal and permission checks), or a redirect to the sign-in page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shipyard.api.auth import Principal, authenticate
from shipyard.api.deps import DB, State
from shipyard.builds.errors import Forbidden, Unauthenticated
from shipyard.builds.permissions import Permission
from shipyard.web import session as web_session

REASONS = {
    "revoked": "Your token is no longer valid: sign in again.",
    "expired": "Your session ended: sign in again.",
}


class SignInRequired(Exception):
    """No session, an expired one, or a token that is no longer valid. ``reason`` is a code
    of ``REASONS`` (the sign-in page shows only its own texts, never one from a URL)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    session: web_session.WebSession

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def can(self, permission: Permission | Sequence[Permission], project_id: str) -> bool:
        """What the page may offer: a button the API would refuse is not shown."""
        try:
            self.principal.require(permission, project_id)
        except Forbidden:
            return False
        return True


def current_viewer(request: Request, state: State, session: DB) -> Viewer:
    signed_in = web_session.from_request(state.box, request)
    if signed_in is None:
        raise SignInRequired()
    try:
        principal = authenticate(session, signed_in.token, state.admin_token)
    except Unauthenticated as exc:
        raise SignInRequired("revoked") from exc
    return Viewer(principal, signed_in)


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
