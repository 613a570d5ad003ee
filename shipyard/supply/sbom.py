"""The image's SBOM: CycloneDX 1.5 JSON (``cyclonedx-python-lib``) of the packages found in
it (``supply.packages``), each with its package URL and where it was found.

Deterministic for one image: the serial number is derived from the image digest and the
timestamp is the image's own ``created`` (the commit time), so the same image gets the same
SBOM bytes and so the same artifact digest."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot5
from packageurl import PackageURL

from shipyard import __version__
from shipyard.supply.packages import Distro, Package

MEDIA_TYPE = "application/vnd.cyclonedx+json"


def purl(package: Package, distro: Distro) -> PackageURL:
    qualifiers: dict[str, str] = {}
    namespace: str | None = None
    name = package.name
    if package.kind in ("deb", "apk"):
        namespace = distro.id or ("debian" if package.kind == "deb" else "alpine")
        if package.arch:
            qualifiers["arch"] = package.arch
        if distro.id and distro.version:
            qualifiers["distro"] = f"{distro.id}-{distro.version}"
    elif package.kind == "npm" and name.startswith("@") and "/" in name:
        namespace, name = name.split("/", 1)
    elif package.kind == "pypi":
        name = name.lower().replace("_", "-").replace(".", "-")  # PEP 503 normalised
    return PackageURL(
        type=package.kind, namespace=namespace, name=name, version=package.version,
        qualifiers=qualifiers or None,
    )  # fmt: skip


def cyclonedx(
    packages: Sequence[Package],
    distro: Distro,
    *,
    image: str,
    digest: str,
    created: int,
    truncated: bool = False,
) -> bytes:
    """``image``: the repository (``host/project/service``); ``digest``: its manifest digest."""
    root = Component(
        name=image,
        version=digest,
        type=ComponentType.CONTAINER,
        bom_ref="image",
        supplier=OrganizationalEntity(name="Shipyard"),
    )
    metadata = BomMetaData(
        timestamp=datetime.fromtimestamp(created, UTC),
        component=root,
        properties=[Property(name="shipyard:version", value=__version__)]
        + ([Property(name="shipyard:truncated", value="true")] if truncated else []),
    )
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"shipyard:{image}@{digest}"),
              metadata=metadata)  # fmt: skip
    components: list[Component] = []
    seen: set[str] = set()
    for package in packages:
        url = purl(package, distro)
        ref = url.to_string()
        if ref in seen:
            continue  # one package at several places (nested node_modules): listed once
        seen.add(ref)
        component = Component(
            name=package.name, version=package.version, type=ComponentType.LIBRARY,
            purl=url, bom_ref=ref, properties=[Property(name="shipyard:path", value=package.path)],
        )  # fmt: skip
        components.append(component)
        bom.components.add(component)
    bom.register_dependency(root, components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "incomplete dependency graph": we list no edges
        return JsonV1Dot5(bom).output_as_string(indent=None).encode()
