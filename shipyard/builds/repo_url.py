"""Credentials inside a repository URL (``https://user:token@host/repo.git``) are secrets:
they are split off, stored encrypted, and put back only for the fetch."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without the secret part, the secret userinfo or None)``.

    For http(s) any userinfo is secret (``https://<token>@host`` is common); for ssh and git a
    bare user name (``ssh://git@host``) is not, a password is."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if parts.scheme not in ("http", "https") and ":" not in userinfo:
        return url, None
    return urlunsplit(parts._replace(netloc=hostport)), userinfo


def join_credentials(url: str, userinfo: str | None) -> str:
    if not userinfo:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
