"""Registry passwords that Shipyard mints itself: stateless, signed, bound to their use.

A credential is an HS256 JWT under a key derived from the settings secret key (as
``SecretBox`` derives its keys), so any process with the secret key can check it and nothing
is stored. Kinds:

- ``build``: one build of one project (push + pull its own project, pull shared); short-lived,
  written into the build's authfile by the pipeline.
- ``pull``: handed to users through the API (pull their project and shared images).
- ``internal``: Shipyard's own checks (reuse: ``skopeo inspect``; pushes until builds carry
  their own credential). It has no expiry because the pipeline holds one target for its
  whole life; it never leaves the server (0600 authfiles only) and changes with the secret key.

The username is informational (clients insist on one); only the password is trusted.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Literal

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Kind = Literal["build", "pull", "internal"]
KINDS: tuple[Kind, ...] = ("build", "pull", "internal")

_ALGORITHM = "HS256"
_ISSUER = "shipyard"
# Its own audience: a credential is never mistaken for any other JWT Shipyard signs.
_AUDIENCE = "shipyard-registry-credential"
USERNAMES: dict[Kind, str] = {"build": "build", "pull": "pull", "internal": "shipyard"}


@dataclass(frozen=True)
class Credential:
    """A checked credential: what it was issued for."""

    kind: Kind
    project_id: str | None  # None only for ``internal``
    build_id: str | None
    expires_at: int | None  # unix seconds; None only for ``internal``


class RegistryCredentials:
    def __init__(self, secret_key: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"shipyard registry credentials v1",
        ).derive(secret_key.encode())

    def _sign(self, claims: dict[str, object]) -> str:
        body = {"iss": _ISSUER, "aud": _AUDIENCE, "jti": secrets.token_urlsafe(12), **claims}
        return jwt.encode(body, self._key, algorithm=_ALGORITHM)

    def issue_build_credential(self, project_id: str, build_id: str, ttl_s: int) -> tuple[str, str]:
        """(username, password) for one build's pushes and pulls, valid ``ttl_s`` seconds."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = int(time.time())
        claims = {"kind": "build", "project": project_id, "build": build_id, "iat": now}
        return USERNAMES["build"], self._sign({**claims, "exp": now + ttl_s})

    def issue_pull_credential(self, project_id: str, ttl_s: int) -> tuple[str, str, int]:
        """(username, password, expires_at) for pulling one project's images."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = int(time.time())
        expires_at = now + ttl_s
        password = self._sign(
            {"kind": "pull", "project": project_id, "iat": now, "exp": expires_at}
        )
        return USERNAMES["pull"], password, expires_at

    def internal_credential(self) -> tuple[str, str]:
        """(username, password) of Shipyard itself: every repository, deletes included.

        Deterministic (no ``jti``, no ``iat``): every process derives the same value, so a
        restart or a second worker changes nothing."""
        body = {"iss": _ISSUER, "aud": _AUDIENCE, "kind": "internal"}
        return USERNAMES["internal"], jwt.encode(body, self._key, algorithm=_ALGORITHM)

    def verify(self, password: str) -> Credential | None:
        """The credential ``password`` carries, or None (forged, expired, not one of ours)."""
        try:
            claims = jwt.decode(
                password,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                issuer=_ISSUER,
                options={"require": ["iss", "aud", "kind"]},
            )
        except jwt.PyJWTError:
            return None
        kind = claims.get("kind")
        if kind == "internal":
            return Credential("internal", None, None, None)
        project, expires = claims.get("project"), claims.get("exp")
        # exp was checked by decode when present; a user credential without one is refused.
        if kind not in KINDS or not isinstance(project, str) or not isinstance(expires, int):
            return None
        build = claims.get("build")
        if kind == "build" and not isinstance(build, str):
            return None
        return Credential(kind, project, build if kind == "build" else None, expires)
