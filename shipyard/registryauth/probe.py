"""A worker's start-up check against another Shipyard's registry
(``SHIPYARD_REGISTRY_AUTH=shipyard``): the registry names its token endpoint, and that
endpoint accepts this worker's internal credential. A worker whose ``SHIPYARD_SECRET_KEY`` is
not the API's would otherwise take builds and fail every one of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from shipyard.pipeline.registry import RegistryTarget

_REALM = re.compile(r'realm="([^"]+)"')


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    refused: bool = False  # the token endpoint said no: the secret key differs


def advertised_realm(target: RegistryTarget, timeout_s: float = 5.0) -> str | None:
    """The realm in the registry's ``WWW-Authenticate`` challenge, or None."""
    scheme = "http" if target.insecure else "https"
    response = httpx.get(
        f"{scheme}://{target.host}/v2/",
        timeout=timeout_s,
        trust_env=False,
        verify=not target.insecure,
    )
    match = _REALM.search(response.headers.get("www-authenticate", ""))
    return match.group(1) if match else None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def probe(target: RegistryTarget, expected_realm: str, timeout_s: float = 5.0) -> ProbeResult:
    """``target`` carries the internal credential; ``expected_realm`` is the token endpoint
    this worker's builds are allowed to reach (``SHIPYARD_PUBLIC_URL``)."""
    assert target.username is not None and target.password is not None
    try:
        realm = advertised_realm(target, timeout_s)
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"the registry {target.host} is not answering ({exc})")
    if realm is None:
        return ProbeResult(
            False,
            f"the registry {target.host} asks for no Shipyard token: is it Shipyard's "
            "embedded registry? (else SHIPYARD_REGISTRY_AUTH=basic)",
        )
    if _host_port(realm) != _host_port(expected_realm):
        # The namespace allowance covers the expected realm only: builds could not get tokens.
        return ProbeResult(
            False,
            f"the registry sends clients to {realm} for tokens, but this worker expects "
            f"{expected_realm}: set SHIPYARD_PUBLIC_URL to the API's SHIPYARD_PUBLIC_URL",
        )
    try:
        response = httpx.get(
            realm,
            auth=(target.username, target.password),
            timeout=timeout_s,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"the token endpoint {realm} is not answering ({exc})")
    if response.status_code == 401:
        return ProbeResult(
            False,
            f"the API's token endpoint {realm} refused this worker's registry credential: "
            "SHIPYARD_SECRET_KEY is not the API's (copy the secret-key file of its data dir)",
            refused=True,
        )
    if response.status_code != 200:
        return ProbeResult(False, f"the token endpoint {realm} answered {response.status_code}")
    return ProbeResult(True, f"the registry {target.host} accepts this worker (tokens: {realm})")
