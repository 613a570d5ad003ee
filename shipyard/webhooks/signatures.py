"""Each provider's own way of proving a delivery came from it.

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.
- GitLab: ``X-Gitlab-Token: <the secret itself>`` (GitLab signs nothing).
- Gitea / Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature: <hex HMAC-SHA256>``.

Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.strip().lower().encode(), expected.encode())


def verify(provider: Provider, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """Whether the delivery carries ``secret``'s proof. ``headers`` keys are lower-case."""
    if provider is Provider.GITHUB:
        given = headers.get("x-hub-signature-256", "")
        if not given.startswith("sha256="):
            return False
        return _equal(given.removeprefix("sha256="), hmac_hex(secret, body))
    if provider is Provider.GITLAB:
        token = headers.get("x-gitlab-token", "")
        return bool(token) and hmac.compare_digest(token.encode(), secret.encode())
    given = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature") or ""
    return bool(given) and _equal(given, hmac_hex(secret, body))


def missing_proof(provider: Provider, headers: Mapping[str, str]) -> bool:
    """No signature or token at all (as opposed to a wrong one): for the counter's label."""
    names = {
        Provider.GITHUB: ("x-hub-signature-256",),
        Provider.GITLAB: ("x-gitlab-token",),
        Provider.GITEA: ("x-gitea-signature", "x-forgejo-signature"),
    }[provider]
    return not any(headers.get(name) for name in names)
