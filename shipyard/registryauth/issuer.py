"""Bearer tokens for distribution's token auth (docs.docker.com/registry/spec/auth/jwt)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from shipyard.registryauth.keys import SigningKey
from shipyard.registryauth.scopes import Access


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: datetime

    def response(self) -> dict[str, object]:
        """The token endpoint's answer; ``access_token`` is the OAuth2 spelling of ``token``
        and some clients read only that one."""
        return {
            "token": self.token,
            "access_token": self.token,
            "expires_in": self.expires_in,
            "issued_at": self.issued_at.isoformat().replace("+00:00", "Z"),
        }


class TokenIssuer:
    """Signs ES256 JWTs whose ``x5c`` header carries the self-signed certificate that the
    registry trusts (``rootcertbundle``)."""

    def __init__(self, key: SigningKey, *, issuer: str, service: str, ttl_s: int = 300) -> None:
        if ttl_s < 60:
            # Clients treat a shorter expires_in as 60 s and would send a dead token.
            raise ValueError("registry token lifetime must be at least 60 s")
        self._key = key
        self.issuer = issuer
        self.service = service
        self.ttl_s = ttl_s

    def issue(
        self, subject: str, access: Sequence[Access], *, now: float | None = None
    ) -> IssuedToken:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,  # a string: distribution 2.8 does not read a list here
            "exp": issued + self.ttl_s,
            "nbf": issued,
            "iat": issued,
            "jti": secrets.token_urlsafe(16),
            "access": [a.claim() for a in access],
        }
        token = jwt.encode(
            claims,
            self._key.private_key,
            algorithm="ES256",
            headers={"typ": "JWT", "x5c": self._key.x5c},
        )
        return IssuedToken(token, self.ttl_s, datetime.fromtimestamp(issued, UTC))
