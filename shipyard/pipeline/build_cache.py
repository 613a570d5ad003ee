"""The layer cache across workers: a cache repository per service in the registry.

A worker's own buildah store is the fast cache (``--layers``), but a new worker (an empty
data dir) has none, so its first build of a service would be cold. A worker's first build
of a service (its store holds no image of it) therefore reads the service's cache
repository (``--cache-from``: buildah pulls a step's image when its cache key matches and
reports ``Using cache``) and pushes the steps of its build there (``buildah --cache-to``).
Later builds on that worker use its store only.

The cache key is buildah's: the base image's layers and history and the step's own history
line, which holds Shipyard's build-args key (``LABEL org.shipyard.build-args-key``), the
build-argument values a RUN step sees (the secrets key included) and the digest of COPY/ADD
content. So a changed argument, file or secret never matches a stale entry.

Limits of buildah 1.28 (DESIGN.md, "cache"): from the first ``ARG`` of a stage on, nothing is
read from the registry (upstream #4315): those steps are rebuilt on a fresh worker. Only
the first build of a service on a worker reads the registry; later ones use the store.

Isolation: the repository is ``<registry>/<project>/<name>``, always inside the project's own
namespace, which only that project's build credential may pull from or push to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shipyard.gc.registry import RegistryAdmin
from shipyard.pipeline.builder import stores_repository
from shipyard.pipeline.registry import RegistryTarget

DEFAULT_REPOSITORY = "{service}/cache"
_FIELD = re.compile(r"\{([^{}]*)\}")
# Executors whose builds all share one store per project: a worker is never fresh there,
# so pushing every step to the registry would only slow cold builds down (~20 % here).
SINGLE_STORE_EXECUTORS = frozenset({"local", "none"})


@dataclass(frozen=True)
class CachePlan:
    to: str | None  # repository every step made is pushed to
    source: str | None  # repository read for steps the store lacks (a fresh worker)

    def describe(self) -> str | None:
        if self.source is not None:
            return (
                "Layer cache: this worker has built no image of the service yet; steps are "
                f"read from the registry cache {self.source}"
            )
        return None


@dataclass(frozen=True)
class RegistryCache:
    """``repository``: the cache repository's name inside the project's namespace, with
    ``{service}`` for the service (or job) name: ``{service}/cache`` by default."""

    repository: str = DEFAULT_REPOSITORY

    def __post_init__(self) -> None:
        fields = set(_FIELD.findall(self.repository))
        if fields != {"service"}:
            raise ValueError(
                f"build cache repository {self.repository!r} must use {{service}} and no other "
                "field (one cache per service)"
            )
        name = self.name("x")
        if name == "x":
            raise ValueError("the build cache repository cannot be the service's own repository")
        # The registry's naming rules (lower case components): checked once, here.
        RegistryTarget(host="localhost").repository("p", name)

    def name(self, service: str) -> str:
        return self.repository.replace("{service}", service)

    def plan(
        self,
        registry: RegistryTarget,
        project_id: str,
        service: str,
        *,
        store_root: Path,
        image_repository: str,
        use_cache: bool,
    ) -> CachePlan:
        """Only on a worker whose store holds no image of ``image_repository`` (its first
        build of the service): push the steps, and read the registry when the build uses
        the cache at all.

        Not on a warm store: buildah 1.28 pushes a cache entry for every step, hits
        included (a manifest and a request per layer each), which made warm rebuilds of the
        benchmark's sample ~2 s slower; the steps a warm worker builds reach the registry
        with the next fresh worker's build of them."""
        if stores_repository(store_root, image_repository):
            return CachePlan(None, None)
        repository = registry.repository(project_id, self.name(service))
        return CachePlan(to=repository, source=repository if use_cache else None)


def configured(enabled: bool | None, executor: str, repository: str) -> RegistryCache | None:
    """The registry cache as ``SHIPYARD_BUILD_CACHE_REGISTRY`` / ``_REPOSITORY`` say; unset =
    on exactly for executors whose workers have stores of their own."""
    if enabled is None:
        enabled = executor not in SINGLE_STORE_EXECUTORS
    return RegistryCache(repository) if enabled else None


def drop(admin: RegistryTarget, repository: str) -> int:
    """Delete every manifest of the cache ``repository`` (``host/…/project/…``), as a reset
    of the service's build cache asks: its next build on any worker builds every step.
    ``admin``: Shipyard's own identity, the only one the embedded registry lets delete.
    Returns how many manifests went; the registry's garbage collection frees their blobs."""
    name = repository.split("/", 1)[1]
    client = RegistryAdmin(admin)
    deleted = 0
    try:
        digests = {client.resolve(name, tag) for tag in client.tags(name)}
        for digest in sorted(d for d in digests if d):
            client.delete(name, digest)
            deleted += 1
    finally:
        client.close()
    return deleted
