"""Path normalisation the official clients need: team-scoped paths and doubled slashes."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_TEAM_PREFIX = re.compile(r"^/v1/teams/[^/]+(?=/projects(/|$))")
_SLASHES = re.compile(r"/{2,}")


class NormalisePath:
    """``//v1/...`` (a host configured with a trailing slash) and
    ``/v1/teams/{teamId}/projects/...``
    (clients given a teamId) both reach the ordinary route. Shipyard has one implicit team."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = _TEAM_PREFIX.sub("/v1", _SLASHES.sub("/", scope["path"]))
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
