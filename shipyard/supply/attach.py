"""A build's supply-chain step: the SBOM is made from the image's layers on a thread while
buildah pushes (it reads files only: no process, no wait on the registry), then the SBOM
and the provenance are attached to the pushed image as OCI referrers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shipyard.pipeline.registry import RegistryTarget
from shipyard.supply import sbom as sbom_format
from shipyard.supply.labels import rfc3339
from shipyard.supply.packages import distro, inventory
from shipyard.supply.provenance import MEDIA_TYPE as PROVENANCE_TYPE
from shipyard.supply.provenance import BuildFacts, statement
from shipyard.supply.referrers import OciClient
from shipyard.supply.rootfs import ImageTree, layer_dirs


@dataclass(frozen=True)
class Sbom:
    document: bytes
    packages: int
    seconds: float


class SbomJob:
    """``SbomJob(...).result()``: the SBOM, or the exception that stopped it."""

    def __init__(self, store_root: Path, image_id: str, *, image: str, created: int) -> None:
        self._result: Sbom | BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(store_root, image_id, image, created), name="sbom",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _run(self, store_root: Path, image_id: str, image: str, created: int) -> None:
        started = time.monotonic()
        try:
            tree = ImageTree(layer_dirs(store_root, image_id))
            packages = inventory(tree)
            document = sbom_format.cyclonedx(
                packages, distro(tree), image=image, digest=image_id, created=created,
                truncated=tree.truncated,
            )  # fmt: skip
            self._result = Sbom(document, len(packages), time.monotonic() - started)
        except BaseException as exc:  # handed to the caller
            self._result = exc

    def result(self, timeout_s: float = 300.0) -> Sbom:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the SBOM took too long")
        assert self._result is not None
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result


@dataclass(frozen=True)
class Attachments:
    sbom_digest: str | None
    provenance_digest: str | None
    via_tag: bool


def attach(
    target: RegistryTarget,
    repository: str,
    digest: str,
    *,
    sbom: bytes | None,
    facts: BuildFacts,
    timeout_s: float = 60.0,
) -> Attachments:
    """Attach ``sbom`` (when made) and the provenance to ``repository@digest``
    (``repository`` with its host, as ``registry.uri`` has it)."""
    name = repository.split("/", 1)[1]
    created = {"org.opencontainers.image.created": rfc3339(facts.origin.created)}
    with OciClient(target, actions="pull,push", timeout_s=timeout_s) as client:
        sbom_digest = None
        via_tag = True
        if sbom is not None:
            done = client.attach(name, digest, artifact_type=sbom_format.MEDIA_TYPE,
                                 document=sbom, annotations=created)  # fmt: skip
            sbom_digest, via_tag = done.digest, done.via_tag
        document = statement(facts, repository=repository, digest=digest)
        done = client.attach(name, digest, artifact_type=PROVENANCE_TYPE, document=document,
                             annotations=created)  # fmt: skip
        return Attachments(sbom_digest, done.digest, via_tag and done.via_tag)
