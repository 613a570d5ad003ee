"""``GET …/branches`` and ``GET …/pull-requests`` of a service's or job's repository."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from shipyard.api.deps import DB, Caller, State
from shipyard.api.pagination import Page, encode_cursor, offset_of, pagination
from shipyard.api.schemas.common import envelope
from shipyard.builds import permissions, repository_refs
from shipyard.builds.errors import InvalidRequest
from shipyard.builds.service import repository_url
from shipyard.pipeline.mirror import MirrorStore
from shipyard.store import workloads as workload_store

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["repository"])

Entity = Literal["service", "job"]
# A mirror update fetches only new objects (ls-remote without mirrors answers in well under a
# second); a remote that hangs must not hold a worker long.
LS_REMOTE_TIMEOUT_S = 30.0


def _endpoint(entity: Entity, what: Literal["branches", "pullRequests"]):  # type: ignore[no-untyped-def]
    def handler(
        projectId: str, entityId: str, session: DB, state: State, caller: Caller, page: Page
    ) -> dict[str, Any]:
        # A sync handler: FastAPI runs it in a worker thread, so git never blocks the loop.
        caller.require(permissions.READ[entity], projectId)
        workload = workload_store.get(session, projectId, entity, entityId)
        url, _credentials = repository_url(state.box, workload)
        if not url:
            raise InvalidRequest(f"{entity} '{entityId}' has no repository (vcsData.projectUrl)")
        branch = workload.vcs_branch
        session.close()  # git may take seconds: give the connection back first
        settings = state.settings
        mirrors = MirrorStore(settings.data_dir / "mirrors") if settings.git_mirrors else None
        refs = repository_refs.read_refs(
            url,
            allow_private=settings.allow_private_urls,
            allowed_networks=tuple(settings.build_allowed_networks),
            allowed_local_roots=tuple(settings.allowed_local_roots),
            timeout_s=min(LS_REMOTE_TIMEOUT_S, settings.git_timeout_s),
            # The project's own mirror: the same commits its builds see.
            mirror=mirrors.path(projectId, url) if mirrors is not None else None,
        )
        rows = (
            repository_refs.branches(refs)
            if what == "branches"
            else repository_refs.pull_requests(refs, branch)
        )
        offset = offset_of(page)
        shown = rows[offset : offset + page.per_page + 1]
        return envelope(
            {what: shown[: page.per_page]},
            pagination(len(shown), page.per_page, encode_cursor({"o": offset + page.per_page})),
        )

    return handler


for _entity, _segment in (("service", "services"), ("job", "jobs")):
    for _what, _suffix in (("branches", "branches"), ("pullRequests", "pull-requests")):
        router.add_api_route(
            f"/{_segment}/{{entityId}}/{_suffix}",
            _endpoint(_entity, _what),  # type: ignore[arg-type]
            methods=["GET"],
            summary=f"List {_entity} {_suffix.replace('-', ' ')}",
            response_model=None,
        )
