"""The registry targets Shipyard pushes and checks with, from the settings: one place for the
embedded registry, an external one with the operator's credentials, and another Shipyard's
embedded registry (``SHIPYARD_REGISTRY_AUTH=shipyard``: a worker on another machine)."""

from __future__ import annotations

from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.pipeline.run import BuildTarget
from shipyard.registryauth.authority import credentials
from shipyard.settings import Settings


def shipyard_token_auth(settings: Settings) -> bool:
    """``SHIPYARD_REGISTRY`` is a Shipyard token-auth registry (its API verifies credentials
    signed with the shared secret key)."""
    return bool(settings.registry) and settings.registry_auth == "shipyard"


def own_target(settings: Settings, embedded: EmbeddedRegistry | None) -> RegistryTarget | None:
    """Shipyard's own identity at the registry (reuse checks, supply-chain reads, garbage
    collection), or None (no registry: an API that runs no builds and no registry)."""
    if settings.registry:
        if shipyard_token_auth(settings):
            # The internal credential: the API's token endpoint grants it what Shipyard's
            # checks need, as on the embedded registry.
            username, password = credentials(settings).internal_credential()
            return RegistryTarget.parse(
                settings.registry,
                insecure=settings.registry_insecure,
                username=username,
                password=password,
            )
        return RegistryTarget.parse(
            settings.registry,
            insecure=settings.registry_insecure,
            username=settings.registry_username,
            password=settings.registry_password.get_secret_value()
            if settings.registry_password
            else None,
        )
    if embedded is not None:
        return embedded.target_with(*credentials(settings).internal_credential())
    return None


def build_target(
    settings: Settings, embedded: EmbeddedRegistry | None, target: RegistryTarget
) -> BuildTarget | None:
    """Per-build credentials of the build's own project (push/pull its repositories, pull
    shared ones), or None: an external registry, where builds use the operator's credentials
    (SECURITY.md)."""
    if embedded is None and not shipyard_token_auth(settings):
        return None
    issuer = credentials(settings)
    # Valid for the whole build plus its push; expired credentials cannot be replayed later.
    ttl = int(settings.build_timeout_s) + 600

    def for_build(project_id: str, build_id: str) -> RegistryTarget:
        username, password = issuer.issue_build_credential(project_id, build_id, ttl)
        if embedded is not None:
            return embedded.target_with(username, password)
        return RegistryTarget(
            host=target.host,
            prefix=target.prefix,
            insecure=target.insecure,
            username=username,
            password=password,
        )

    return for_build
