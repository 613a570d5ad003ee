"""Re-running a build: a new build of the same source and the same overrides.

"Same source" is the same commit: the commit the build resolved (or the one it asked for,
if it never got that far), with its branch or pull request kept for tags and display; a
bundle build downloads the same (sealed) URL. The overrides are the build's own request —
build arguments, build files and secret mounts, reopened from its sealed column and sealed
again for the new build — so secrets never leave the server. The workload's stored
settings apply as they are now, as for any new build.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shipyard.builds import service as build_service
from shipyard.builds.request import (
    BuildRequest,
    DockerOverrides,
    Overrides,
    SourceKind,
    SourceSpec,
)
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Build, Workload


def request_of(box: SecretBox, build: Build) -> BuildRequest:
    """The request ``build`` was started with (its own overrides, nothing merged in)."""
    docker = DockerOverrides(
        dockerfile_path=build.dockerfile_path,
        work_dir=build.docker_work_dir,
        target=build.docker_target,
        dockerfile_contents=build.dockerfile_contents,
    )
    secret_json = (
        box.open(build.overrides_enc, build_service.build_context(build.id))
        if build.overrides_enc
        else {}
    )
    source = SourceSpec(
        kind=SourceKind(build.source_kind),
        sha=build.sha or build.requested_sha,
        branch=build.branch,
        pull_request_id=build.pull_request_id,
        bundle_url=build_service.fetch_bundle_url(box, build),
    )
    return BuildRequest(source=source, overrides=Overrides.from_secret_json(secret_json, docker))


def rerun(
    session: Session,
    box: SecretBox,
    workload: Workload,
    build: Build,
    max_queued: int | None = None,
) -> Build:
    """Persist a QUEUED copy of ``build``'s request; the caller commits and submits it."""
    new, _ = build_service.start(
        session, box, workload, request_of(box, build), max_queued=max_queued
    )
    return new
