"""Hostile-tenant review of the dashboard: its cookies (the session and the sign-in form's
CSRF cookie) are HttpOnly, SameSite=Strict and Secure over https — the sign-in cookie was
never Secure, and behind a TLS proxy on another host neither was the session's (uvicorn only
believes X-Forwarded-Proto from SHIPYARD_FORWARDED_ALLOW_IPS; SHIPYARD_COOKIE_SECURE=true
forces it); an unexpected error on a page never shows its exception text."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api import server
from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings
from shipyard.web import queries


def browser(settings: Settings, base_url: str = "http://testserver") -> TestClient:
    app = create_app(settings, lambda *_: NullExecutor())
    return TestClient(app, base_url=base_url, follow_redirects=False)


def cookies_of(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header: its attributes)."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        name = next(iter(SimpleCookie(header)))
        out[name] = header.lower()
    return out


def keep(b: TestClient, response: Any) -> None:
    """Store the response's cookies as plain ones (a test over http with Secure forced on:
    the browser would have come over https to the proxy)."""
    for header in response.headers.get_list("set-cookie"):
        for name, morsel in SimpleCookie(header).items():
            b.cookies.set(name, morsel.value)


def sign_in(b: TestClient, settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    assert settings.admin_token is not None
    form = b.get("/signin")
    keep(b, form)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    done = b.post(
        "/signin", data={"token": settings.admin_token.get_secret_value(), "csrf": csrf.group(1)}
    )
    assert done.status_code == 303, done.text
    keep(b, done)
    return cookies_of(form), cookies_of(done)


@pytest.mark.parametrize(
    ("base_url", "forced", "secure"),
    [
        ("http://testserver", None, False),
        ("https://testserver", None, True),
        ("http://testserver", True, True),  # a TLS proxy that sends no X-Forwarded-Proto
    ],
)
def test_cookie_attributes(
    settings: Settings, base_url: str, forced: bool | None, secure: bool
) -> None:
    settings = settings.model_copy(update={"cookie_secure": forced})
    with browser(settings, base_url) as b:
        form, signed_in = sign_in(b, settings)
        signout_csrf = re.search(r'name="csrf" value="([^"]+)"', b.get("/").text)
        assert signout_csrf is not None
        out = cookies_of(b.post("/signout", data={"csrf": signout_csrf.group(1)}))
    for header in (form["shipyard_signin"], signed_in["shipyard_session"],
                   signed_in["shipyard_signin"], out["shipyard_session"]):  # fmt: skip
        assert "httponly" in header and "samesite=strict" in header, header
        assert ("; secure" in header) is secure, header


def test_the_server_trusts_forwarded_headers_only_from_the_setting(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def run(self: Any, *_: Any) -> None:
        seen["proxy_headers"] = self.config.proxy_headers
        seen["forwarded_allow_ips"] = self.config.forwarded_allow_ips

    monkeypatch.setattr(server.ShipyardServer, "run", run)
    settings = settings.model_copy(update={"forwarded_allow_ips": "10.0.0.7"})
    assert Settings.model_fields["forwarded_allow_ips"].default == "127.0.0.1"
    server.serve(create_app(settings, lambda *_: NullExecutor()), "127.0.0.1", 0)
    assert seen == {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.7"}


def test_an_unexpected_error_on_a_page_shows_no_internals(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("psycopg: password=hunter2 at /var/lib/shipyard/db")

    monkeypatch.setattr(queries, "workload_counts", broken)
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as b:
        sign_in(b, settings)
        r = b.get("/")
    assert r.status_code == 500
    assert "hunter2" not in r.text and "psycopg" not in r.text and "/var/lib" not in r.text
