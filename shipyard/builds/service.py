"""Starting and aborting builds: the domain's rules applied, then the store written.

Callers commit; the executor is told after the commit (the row is the queue entry, so a
lost wake-up only delays a build until the next poll, never loses it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.builds.bundle_url import redact as redact_bundle_url
from shipyard.builds.errors import Conflict, TooManyRequests
from shipyard.builds.repo_url import join_credentials, split_credentials
from shipyard.builds.request import (
    BuildRequest,
    DockerOverrides,
    Overrides,
    SourceKind,
    SourceSpec,
)
from shipyard.builds.status import BuildStatus
from shipyard.store import builds as build_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Build, Workload
from shipyard.uploads import store as uploads


def workload_context(workload: Workload) -> str:
    return f"workload:{workload.id}"


def build_context(build_id: str) -> str:
    return f"build:{build_id}"


def _bundle_url_context(build_id: str) -> str:
    return f"bundle-url:{build_id}"


def fetch_bundle_url(box: SecretBox, build: Build) -> str | None:
    """The URL to download the bundle from: the sealed original. Builds queued before it was
    sealed (migration 0004) still hold it in ``bundle_url``."""
    if build.bundle_url_enc is not None:
        return str(box.open(build.bundle_url_enc, _bundle_url_context(build.id)))
    return build.bundle_url


def _repository_context(workload: Workload) -> str:
    # Known before the row is inserted (unlike its id), so nothing secret is ever flushed.
    return f"repository:{workload.project_id}/{workload.entity}/{workload.slug}"


def store_repository_url(box: SecretBox, workload: Workload, url: str) -> str:
    """Keep the URL without credentials in clear and the credentials sealed; returns the
    URL that may be shown. Call before the workload is first flushed."""
    public, credentials = split_credentials(url)
    workload.vcs_url = public
    workload.vcs_credentials_enc = (
        box.seal(credentials, _repository_context(workload)) if credentials else None
    )
    return public


def repository_url(box: SecretBox, workload: Workload) -> tuple[str | None, str | None]:
    """The URL to fetch from (credentials put back) and the credentials, for redaction."""
    if workload.vcs_url is None or workload.vcs_credentials_enc is None:
        return workload.vcs_url, None
    credentials = str(box.open(workload.vcs_credentials_enc, _repository_context(workload)))
    return join_credentials(workload.vcs_url, credentials), credentials


def stored_secrets(box: SecretBox, workload: Workload) -> Overrides:
    """The workload's own build arguments, build files and secret mounts (decrypted)."""
    if workload.build_arguments_enc is None:
        return Overrides()
    return Overrides.from_secret_json(
        box.open(workload.build_arguments_enc, workload_context(workload)), DockerOverrides()
    )


def store_secrets(box: SecretBox, workload: Workload, secrets: Overrides) -> None:
    """Replace the workload's stored build arguments, build files and secret mounts."""
    workload.build_arguments_enc = box.seal(secrets.to_secret_json(), workload_context(workload))


def start(
    session: Session,
    box: SecretBox,
    workload: Workload,
    request: BuildRequest,
    *,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
    trigger: dict[str, Any] | None = None,
    max_queued: int | None = None,
) -> tuple[Build, bool]:
    """Persist a QUEUED build with its complete request; returns (build, created).
    ``trigger``: what started it when not the API (e.g. a webhook delivery).
    ``max_queued``: refuse (429) when the project already has that many QUEUED builds
    (SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT); a replayed Idempotency-Key is never refused."""
    if idempotency_key is not None:
        existing = build_store.by_idempotency_key(session, workload.id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint), False
    if max_queued is not None:
        _check_queue(session, workload.project_id, max_queued)

    source = request.source
    docker = request.overrides.docker
    build = Build(
        workload_id=workload.id,
        status=BuildStatus.QUEUED,
        concluded=False,
        success=False,
        source_kind=source.kind,
        sha=source.sha,
        requested_sha=source.sha,
        branch=source.branch,
        pull_request_id=source.pull_request_id,
        # Shown form only; the real URL is sealed below, bound to the build's id.
        bundle_url=None if source.bundle_url is None else redact_bundle_url(source.bundle_url),
        upload_id=source.upload_id,
        dockerfile_path=docker.dockerfile_path,
        docker_work_dir=docker.work_dir,
        docker_target=docker.target,
        dockerfile_contents=docker.dockerfile_contents,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=datetime.now(UTC),
        attempt=0,
        abort_requested=False,
        trigger=trigger,
    )
    secrets = request.overrides.to_secret_json()

    def seal(row: Build) -> None:
        row.overrides_enc = box.seal(secrets, build_context(row.id))
        if source.bundle_url is not None:
            row.bundle_url_enc = box.seal(source.bundle_url, _bundle_url_context(row.id))

    try:
        build_store.insert(session, build, seal)
    except IntegrityError:
        # Two identical requests raced on the same Idempotency-Key: the other one won.
        session.rollback()
        assert idempotency_key is not None
        existing = build_store.by_idempotency_key(session, workload.id, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, fingerprint), False
    if source.upload_id is not None:
        # After the insert (which may redraw the id), in the same transaction.
        uploads.claim(session, source.upload_id, workload.project_id, build.id)
    return build, True


def queued_in_project(session: Session, project_id: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(Build)
        .join(Workload, Build.workload_id == Workload.id)
        .where(
            Workload.project_id == project_id,
            Build.status == BuildStatus.QUEUED,
            Build.concluded.is_(False),
        )
    )
    return int(count or 0)


def _check_queue(session: Session, project_id: str, limit: int) -> None:
    """A soft cap (two starts at the same instant may both pass): what it bounds is a
    tenant queueing without end, which every dispatch and queue notice would then scan."""
    if queued_in_project(session, project_id) >= limit:
        raise TooManyRequests(
            f"project '{project_id}' already has {limit} queued builds "
            "(SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT); wait for some to start, or abort some",
            {"maxQueuedBuilds": limit},
            retry_after_s=30,
        )


def _replay(existing: Build, fingerprint: str | None) -> Build:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            {"Idempotency-Key": "reused"},
        )
    return existing


_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def stored_target(workload: Workload) -> str | None:
    """``buildConfiguration.dockerfileTarget`` of the service, if it is a valid stage name."""
    config = workload.spec.get("buildConfiguration")
    target = config.get("dockerfileTarget") if isinstance(config, dict) else None
    return target if isinstance(target, str) and _TARGET.match(target) else None


def load_request(box: SecretBox, workload: Workload, build: Build) -> BuildRequest:
    """The build's full request: its overrides, with the workload's stored build arguments,
    files and secret mounts merged underneath (overrides win), ``${NAME}`` in files and
    mounts templated from the merged build arguments, and its docker settings over the
    workload's."""
    stored = stored_secrets(box, workload)
    docker = DockerOverrides(
        dockerfile_path=build.dockerfile_path or workload.dockerfile_path,
        work_dir=build.docker_work_dir or workload.docker_work_dir,
        # The build's own target wins over the service's stored buildConfiguration one.
        target=build.docker_target or stored_target(workload),
        dockerfile_contents=build.dockerfile_contents,
    )
    secret_json = (
        box.open(build.overrides_enc, build_context(build.id)) if build.overrides_enc else {}
    )
    overrides = Overrides.from_secret_json(secret_json, docker)
    # Templating runs on the merged set, so a stored file sees the build's own arguments;
    # everything downstream (context, redactor, cache keys) gets the text the build uses.
    merged = stored.under(overrides, docker).templated()
    source = SourceSpec(
        kind=SourceKind(build.source_kind),
        sha=build.requested_sha,
        branch=build.branch,
        pull_request_id=build.pull_request_id,
        bundle_url=fetch_bundle_url(box, build),
        upload_id=build.upload_id,
    )
    return BuildRequest(source=source, overrides=merged)


def abort(session: Session, build: Build) -> bool:
    """Abort: a queued build concludes at once; a running one is flagged for its worker.
    Returns True when a worker has to act (the executor should be told)."""
    if build.concluded:
        raise Conflict(
            f"build '{build.id}' has already concluded with status {build.status}",
            {"status": build.status},
        )
    if build_store.conclude_if_waiting(session, build.id, BuildStatus.ABORTED, "Build aborted"):
        return False
    build_store.request_abort(session, build.id)
    return True
