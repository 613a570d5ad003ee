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
from shipyard.supply.referrers import EMPTY, OciClient
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
    with OciClient(target, actions="pull,push", timeout_s=timeout_s) as client:
        return _attach(client, repository, digest, sbom=sbom, facts=facts)


def _attach(
    client: OciClient,
    repository: str,
    digest: str,
    *,
    sbom: bytes | None,
    facts: BuildFacts,
    pushed: frozenset[str] = frozenset(),
) -> Attachments:
    name = repository.split("/", 1)[1]
    created = {"org.opencontainers.image.created": rfc3339(facts.origin.created)}
    document = statement(facts, repository=repository, digest=digest)
    artifacts = [(PROVENANCE_TYPE, document, created)]
    if sbom is not None:
        artifacts.insert(0, (sbom_format.MEDIA_TYPE, sbom, created))
    done = client.attach_all(name, digest, artifacts, pushed=pushed)
    return Attachments(
        done[0].digest if sbom is not None else None,
        done[-1].digest,
        all(one.via_tag for one in done),
    )


class Attacher:
    """The supply-chain step of one build, started before its image is pushed: the SBOM
    (``SbomJob``) and the blobs that do not depend on the image's digest (the empty config,
    the SBOM document) are made and uploaded while buildah pushes; ``finish`` then attaches
    both artifacts to the pushed image."""

    def __init__(
        self, target: RegistryTarget, repository: str, sbom: SbomJob, *, timeout_s: float
    ) -> None:
        self._target, self._repository = target, repository
        self._sbom = sbom
        self._client = OciClient(target, actions="pull,push", timeout_s=timeout_s)
        self._made: Sbom | BaseException | None = None
        self._pushed: frozenset[str] = frozenset()
        self._thread = threading.Thread(
            target=self._upload, args=(timeout_s,), name="sbom-upload", daemon=True
        )
        self._thread.start()

    def _upload(self, timeout_s: float) -> None:
        try:
            made = self._made = self._sbom.result(timeout_s)
        except BaseException as exc:  # reported by ``finish``
            self._made = exc
            return
        name = self._repository.split("/", 1)[1]
        try:
            pushed = {self._client.push_blob(name, EMPTY)}
            pushed.add(self._client.push_blob(name, made.document))
            self._pushed = frozenset(pushed)
        except Exception:  # ``finish`` uploads what is missing (and reports a failure)
            return

    def sbom(self, timeout_s: float) -> Sbom:
        """The SBOM, or the exception that stopped it (``TimeoutError`` after ``timeout_s``)."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("the SBOM took too long")
        assert self._made is not None
        if isinstance(self._made, BaseException):
            raise self._made
        return self._made

    def finish(
        self, digest: str, *, sbom: bytes | None, facts: BuildFacts, timeout_s: float
    ) -> Attachments:
        """Attach ``sbom`` (None: it failed) and the provenance to ``repository@digest``;
        call after ``sbom``."""
        if self._thread.is_alive():  # still waiting for the SBOM: a client of its own
            with OciClient(self._target, actions="pull,push", timeout_s=timeout_s) as client:
                return _attach(client, self._repository, digest, sbom=sbom, facts=facts)
        self._client.renew(timeout_s)
        return _attach(self._client, self._repository, digest, sbom=sbom, facts=facts,
                       pushed=self._pushed)  # fmt: skip

    def close(self) -> None:
        """Ends the uploads too (a build that failed to push must not wait for them)."""
        self._client.close()
        self._thread.join(1)
