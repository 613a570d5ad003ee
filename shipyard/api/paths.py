"""Path normalisation the official clients need: team-scoped paths and doubled slashes; and
NUL characters refused in paths and queries (PostgreSQL text cannot hold them: a 500)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.api.errors import error_response

_TEAM_PREFIX = re.compile(r"^/v1/teams/[^/]+(?=/projects(/|$))")
_SLASHES = re.compile(r"/{2,}")


class NormalisePath:
    """``//v1/...`` (a host configured with a trailing slash) and
    ``/v1/teams/{teamId}/projects/...``
    (clients given a teamId) both reach the ordinary route. Shipyard has one implicit team."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _has_nul(scope):
            await _refuse_nul(scope, receive, send)
            return
        if scope["type"] in ("http", "websocket"):
            path = _TEAM_PREFIX.sub("/v1", _SLASHES.sub("/", scope["path"]))
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


async def _refuse_nul(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    message = "the path or query contains a NUL character (%00)"
    await error_response(400, message, slug="invalid-request")(scope, receive, send)
