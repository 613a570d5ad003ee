"""The sign-in cookie: sealed, bound to its purpose, expiring, tamper-evident."""

from __future__ import annotations

import time

from shipyard.store.crypto import SecretBox
from shipyard.web import session as web_session


def test_a_session_round_trips_and_does_not_show_the_token() -> None:
    box = SecretBox("k" * 32)
    s = web_session.new_session("sy_secret-token")
    cookie = web_session.seal(box, s)
    assert "sy_secret-token" not in cookie
    assert web_session.unseal(box, cookie) == s


def test_tampered_foreign_or_expired_cookies_are_no_session() -> None:
    box = SecretBox("k" * 32)
    cookie = web_session.seal(box, web_session.new_session("t"))
    flipped = cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]
    assert web_session.unseal(box, flipped) is None
    assert web_session.unseal(SecretBox("other-key" * 4), cookie) is None
    # Another sealed value of the same server (another purpose) does not open as a session.
    other = box.seal({"t": "x", "c": "y", "x": int(time.time()) + 60}, "build:abc")
    import base64

    assert web_session.unseal(box, base64.urlsafe_b64encode(other).decode()) is None
    old = web_session.WebSession("t", "c", int(time.time()) - 1)
    assert web_session.unseal(box, web_session.seal(box, old)) is None
    assert web_session.unseal(box, None) is None
    assert web_session.unseal(box, "x" * 5000) is None


def test_csrf_comparison() -> None:
    s = web_session.new_session("t")
    assert s.csrf_matches(s.csrf)
    assert not s.csrf_matches(None) and not s.csrf_matches(s.csrf + "x")
