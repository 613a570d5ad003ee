"""Registry access: Shipyard as the token issuer of distribution's token auth.

Who may do what on which repository (``scopes``), the credentials Shipyard mints for builds,
users and itself (``credentials``), the signing key (``keys``) and the tokens (``issuer``).
"""

from shipyard.registryauth.authority import RegistryAuth, credentials, realm, token_auth
from shipyard.registryauth.credentials import Credential, RegistryCredentials
from shipyard.registryauth.issuer import IssuedToken, TokenIssuer
from shipyard.registryauth.scopes import Access, Grant, grant_access, parse_scope

__all__ = [
    "Access",
    "Credential",
    "Grant",
    "IssuedToken",
    "RegistryAuth",
    "RegistryCredentials",
    "TokenIssuer",
    "credentials",
    "grant_access",
    "parse_scope",
    "realm",
    "token_auth",
]
