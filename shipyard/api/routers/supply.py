"""``GET …/build/{id}/sbom`` and ``…/provenance`` (services and jobs): the documents
attached to the build's image, read back from the registry (the registry's copy is the
truth; the build row holds the artifacts' digests). Permission: that of reading the build.
The answer is the document itself (``application/vnd.cyclonedx+json`` or
``application/vnd.in-toto+json``), with the artifact's manifest digest in
``Shipyard-Artifact-Digest``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import DB, Caller, State
from shipyard.api.routers.builds import Entity, _get
from shipyard.builds.errors import NotFound, Upstream
from shipyard.pipeline.registry import LOOPBACK, RegistryTarget
from shipyard.registryauth.authority import credentials
from shipyard.registryauth.targets import own_target
from shipyard.settings import Settings
from shipyard.store.models import Build
from shipyard.supply.referrers import OciClient, ReferrerError

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["supply chain"])

Kind = Literal["sbom", "provenance"]
_WHAT = {"sbom": "an SBOM", "provenance": "a provenance statement"}


def reader(settings: Settings) -> RegistryTarget:
    """Shipyard's own read access to the registry its builds push to."""
    if (target := own_target(settings, None)) is not None:
        return target
    username, password = credentials(settings).internal_credential()
    return RegistryTarget(
        host=f"{LOOPBACK}:{settings.registry_port}", insecure=True,
        username=username, password=password,
    )  # fmt: skip


def _document(settings: Settings, build: Build, kind: Kind) -> Response:
    digest = build.sbom_digest if kind == "sbom" else build.provenance_digest
    if digest is None or not build.registry_uri:
        raise NotFound(
            f"build '{build.id}' has no {kind}: only a successful build's image gets {_WHAT[kind]}",
            slug=f"{kind}-not-found",
        )
    if build.image_collected_at is not None:
        raise NotFound(
            f"the image of build '{build.id}' and its {kind} were removed by garbage collection",
            slug=f"{kind}-not-found",
        )
    name = build.registry_uri.split("@", 1)[0].split("/", 1)[1]
    try:
        with OciClient(reader(settings), actions="pull") as client:
            found = client.fetch(name, digest)
    except ReferrerError as exc:
        raise Upstream(f"could not read the {kind} from the registry: {exc}") from exc
    if found is None:
        raise NotFound(f"the {kind} of build '{build.id}' is no longer in the registry",
                       slug=f"{kind}-not-found")  # fmt: skip
    document, media_type = found
    return Response(document, media_type=media_type,
                    headers={"Shipyard-Artifact-Digest": digest})  # fmt: skip


async def _serve(
    session: DB, state: State, caller: Caller, project_id: str, entity: Entity, slug: str,
    build_id: str, kind: Kind,
) -> Response:  # fmt: skip
    build = await run_in_threadpool(_get, session, caller, project_id, entity, slug, build_id)
    return await run_in_threadpool(_document, state.settings, build, kind)


@router.get("/services/{serviceId}/build/{buildId}/sbom", summary="Service build SBOM",
            response_model=None)  # fmt: skip
async def service_build_sbom(
    projectId: str, serviceId: str, buildId: str, session: DB, state: State, caller: Caller
) -> Response:
    return await _serve(session, state, caller, projectId, "service", serviceId, buildId, "sbom")


@router.get("/services/{serviceId}/build/{buildId}/provenance",
            summary="Service build provenance", response_model=None)  # fmt: skip
async def service_build_provenance(
    projectId: str, serviceId: str, buildId: str, session: DB, state: State, caller: Caller
) -> Response:
    return await _serve(session, state, caller, projectId, "service", serviceId, buildId,
                        "provenance")  # fmt: skip


@router.get("/jobs/{jobId}/build/{buildId}/sbom", summary="Job build SBOM", response_model=None)
async def job_build_sbom(
    projectId: str, jobId: str, buildId: str, session: DB, state: State, caller: Caller
) -> Response:
    return await _serve(session, state, caller, projectId, "job", jobId, buildId, "sbom")


@router.get("/jobs/{jobId}/build/{buildId}/provenance", summary="Job build provenance",
            response_model=None)  # fmt: skip
async def job_build_provenance(
    projectId: str, jobId: str, buildId: str, session: DB, state: State, caller: Caller
) -> Response:
    return await _serve(session, state, caller, projectId, "job", jobId, buildId, "provenance")
