"""``/ui/api/v1/…``: the API itself, for the dashboard's scripts. The browser cannot send the
token (it sits in an HttpOnly cookie), so this rewrites the request into ``/v1/…`` with the
session's token as its bearer: every permission, rule and response shape is the API's own.
Unsafe methods also need the session's CSRF token in ``X-CSRF-Token`` (on top of the
cookie's SameSite=Strict)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.api.errors import error_response
from shipyard.web import session as web_session

PREFIX = "/ui/api"
_SAFE = {"GET", "HEAD", "OPTIONS"}
_DROPPED = {b"authorization", b"cookie", web_session.CSRF_HEADER.encode()}


class DashboardApiProxy:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/v1/"):
            await self.app(scope, receive, send)
            return
        box = scope["app"].state.shipyard.box
        signed_in = web_session.from_request(box, HTTPConnection(scope))
        if signed_in is None:
            response = error_response(
                401, "not signed in (or the session expired)", None, "unauthenticated"
            )
            await response(scope, receive, send)
            return
        given = Headers(scope=scope).get(web_session.CSRF_HEADER)
        if scope["method"] not in _SAFE and not signed_in.csrf_matches(given):
            response = error_response(403, "missing or wrong CSRF token", None, "forbidden")
            await response(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROPPED]
        headers.append((b"authorization", f"Bearer {signed_in.token}".encode()))
        inner = path[len(PREFIX) :]
        scope = {**scope, "path": inner, "raw_path": inner.encode(), "headers": headers}
        await self.app(scope, receive, send)
