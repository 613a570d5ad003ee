"""The browser's sign-in: the API token sealed (AES-GCM, the server's key) into an HttpOnly,
SameSite=Strict cookie with a CSRF token and an expiry. Nothing is stored on the server, so a
restart keeps people signed in; every request still looks the token up (a revoked token
signs out on its next click)."""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from shipyard.store.crypto import SecretBox

COOKIE = "shipyard_session"
# Before sign-in: the double-submit token of the sign-in form (login CSRF).
LOGIN_COOKIE = "shipyard_signin"
CSRF_HEADER = "x-csrf-token"
LIFETIME_S = 12 * 60 * 60
_CONTEXT = "dashboard-session"


@dataclass(frozen=True)
class WebSession:
    token: str
    csrf: str
    expires: int

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def new_session(token: str) -> WebSession:
    return WebSession(token, secrets.token_urlsafe(24), int(time.time()) + LIFETIME_S)


def seal(box: SecretBox, session: WebSession) -> str:
    sealed = box.seal({"t": session.token, "c": session.csrf, "x": session.expires}, _CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(box: SecretBox, cookie: str | None) -> WebSession | None:
    """The session in a cookie, or None when absent, tampered with, or expired."""
    if not cookie or len(cookie) > 4096:
        return None
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        value = box.open(raw, _CONTEXT)
        session = WebSession(str(value["t"]), str(value["c"]), int(value["x"]))
    except Exception:  # any damage means "not signed in"
        return None
    return session if session.expires > time.time() else None


def from_request(box: SecretBox, request: HTTPConnection) -> WebSession | None:
    return unseal(box, request.cookies.get(COOKIE))


def secure(request: HTTPConnection) -> bool:
    """Whether a cookie set in answer to ``request`` is ``Secure``: over https (uvicorn reads
    X-Forwarded-Proto from SHIPYARD_FORWARDED_ALLOW_IPS only), or always when
    SHIPYARD_COOKIE_SECURE=true."""
    state = getattr(request.app.state, "shipyard", None)
    forced = getattr(getattr(state, "settings", None), "cookie_secure", None)
    return forced is True or request.url.scheme == "https"


def set_cookie(response: Response, request: HTTPConnection, box: SecretBox, s: WebSession) -> None:
    response.set_cookie(
        COOKIE,
        seal(box, s),
        max_age=LIFETIME_S,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/",
    )


def clear_cookie(response: Response, request: HTTPConnection) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request)
    )
