"""A ``bundleUrl`` can carry secrets: userinfo (``https://user:pass@host/…``) and, far more
often, a presigned query (``X-Amz-Signature=…``, ``token=…``, ``sig=…``). Any query or
fragment is treated as secret, whatever its parameter names: guessing which ones matter
would leak the next signing scheme. The API shows ``redact``'s form; the real URL is stored
sealed (builds.service) and opened only for the fetch.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"


def redact(url: str) -> str:
    """``https://***@host/path?***``: the parts that may be shown. Idempotent."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port, which could be anything
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    return urlunsplit(
        parts._replace(
            netloc=netloc,
            query=MASK if parts.query else "",
            fragment=MASK if parts.fragment else "",
        )
    )


def secret_parts(url: str) -> list[str]:
    """The secret substrings of ``url`` as they may appear in output (raw and percent-decoded):
    for a log redactor."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        found += [userinfo, *userinfo.split(":", 1)]
    for raw in (parts.query, parts.fragment):
        if raw:
            found.append(raw)
            found += [value for _, value in parse_qsl(raw, keep_blank_values=False)]
    return [p for p in {*found, *(unquote(p) for p in found)} if p]
