"""Wiring the dashboard into the application: its routes, its assets, ``/docs`` from local
files, the API proxy for its scripts, and HTML (not JSON) for errors on its pages."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.errors import STATUS_OF
from shipyard.builds.errors import ShipyardError
from shipyard.web import deliveries, docs, pages
from shipyard.web.proxy import DashboardApiProxy
from shipyard.web.viewer import SignInRequired

STATIC_PREFIX = "/ui/static"


def is_page(path: str) -> bool:
    return path == "/" or (
        path.startswith("/ui/") and not path.startswith(("/ui/api/", STATIC_PREFIX))
    )


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(deliveries.router)
    app.include_router(docs.router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=pages.HERE / "static"), name="ui-static")
    app.add_middleware(DashboardApiProxy)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            # htmx follows redirects inside the page; make it load the sign-in page instead.
            return Response(status_code=204, headers={"HX-Redirect": "/signin"})
        if request.url.path.endswith(("/log", "/log/search")):
            return Response('{"error":"not signed in"}', 401, media_type="application/json")
        target = "/signin" + (f"?reason={exc.reason}" if exc.reason else "")
        response = RedirectResponse(target, status_code=303)
        return response

    api_handler = app.exception_handlers.get(ShipyardError)

    async def _domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ShipyardError)
        if not is_page(request.url.path) or request.url.path.endswith(("/log", "/log/search")):
            assert api_handler is not None
            result: Any = api_handler(request, exc)
            return await result  # type: ignore[no-any-return]
        status = next((code for cls, code in STATUS_OF.items() if isinstance(exc, cls)), 400)
        response: HTMLResponse = pages.page(
            request, "error.html", None, status=status, message=exc.message
        )
        response.status_code = status
        return response

    app.add_exception_handler(ShipyardError, _domain)


# The dashboard's pages load nothing from elsewhere; the browser is told so.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Swagger UI sets inline styles.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (
            is_page(path) or path in ("/signin", "/signout", "/docs")
        ):
            await self.app(scope, receive, send)
            return
        csp = _DOCS_CSP if path == "/docs" else _PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
