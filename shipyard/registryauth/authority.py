"""The token server's state, built once from the settings: signing key, credential key,
shared prefixes; and the registry's side of the same contract (``TokenAuth``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from shipyard.pipeline.registry import LOOPBACK, TokenAuth
from shipyard.registryauth import keys
from shipyard.registryauth.credentials import RegistryCredentials
from shipyard.registryauth.issuer import IssuedToken, TokenIssuer
from shipyard.registryauth.principals import credential_grant
from shipyard.registryauth.scopes import Grant, grant_access, parse_scope, valid_repository
from shipyard.settings import Settings

TOKEN_PATH = "/v1/registry/token"
# Listen addresses that include 127.0.0.1, where clients of the registry look for the realm.
_REACHES_LOOPBACK = {"127.0.0.1", "localhost", "0.0.0.0", "::"}

log = logging.getLogger(__name__)


def realm(settings: Settings) -> str:
    """Where the registry sends its clients for tokens. By default loopback over plain HTTP:
    the registry listens only there, and builds reach both from their network namespace
    through DNAT to 127.0.0.1. With ``SHIPYARD_PUBLIC_URL`` (workers on other machines push
    to this registry) the API's address as those workers see it: the registry names one
    realm to every client."""
    if settings.public_url:
        return f"{settings.public_url}{TOKEN_PATH}"
    return f"http://{LOOPBACK}:{settings.port}{TOKEN_PATH}"


def _secret_key(settings: Settings) -> str:
    if settings.secret_key is None:
        raise ValueError("settings have no secret key; run them through settings.prepare")
    return settings.secret_key.get_secret_value()


def credentials(settings: Settings) -> RegistryCredentials:
    return RegistryCredentials(_secret_key(settings))


def token_auth(settings: Settings) -> TokenAuth:
    """What the embedded registry's ``auth.token`` needs (creates the key on first use)."""
    if settings.public_url is None and settings.host not in _REACHES_LOOPBACK:
        log.warning(
            "SHIPYARD_HOST=%s: the registry's token endpoint %s will not answer; "
            "listen on 127.0.0.1 or 0.0.0.0",
            settings.host,
            realm(settings),
        )
    key = keys.load_or_create(settings.data_dir)
    return TokenAuth(
        realm=realm(settings),
        service=settings.registry_token_service,
        issuer=settings.registry_token_issuer,
        rootcertbundle=key.cert_path,
    )


@dataclass(frozen=True)
class RegistryAuth:
    issuer: TokenIssuer
    credentials: RegistryCredentials
    shared_prefixes: tuple[str, ...]

    def __post_init__(self) -> None:
        for prefix in self.shared_prefixes:
            if not valid_repository(prefix):
                raise ValueError(f"invalid shared registry prefix {prefix!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryAuth:
        issuer = TokenIssuer(
            keys.load_or_create(settings.data_dir),
            issuer=settings.registry_token_issuer,
            service=settings.registry_token_service,
            ttl_s=settings.registry_token_ttl_s,
        )
        prefixes = tuple(p.strip("/") for p in settings.registry_shared_prefixes)
        return cls(issuer, credentials(settings), prefixes)

    def credential_grant(self, password: str) -> Grant | None:
        """The grant of a credential Shipyard minted, or None (then try API tokens)."""
        credential = self.credentials.verify(password)
        return None if credential is None else credential_grant(credential)

    def token(self, grant: Grant, scopes: Iterable[str]) -> IssuedToken:
        requested = [access for scope in scopes for access in parse_scope(scope)]
        granted = grant_access(grant, requested, self.shared_prefixes)
        return self.issuer.issue(grant.subject, granted)
