"""Branches and pull requests of a workload's repository, from its refs: ``GET …/branches``
and ``GET …/pull-requests`` in the js-client's shapes.

The refs are read from the project's persistent mirror of the repository after fetching
every branch and PR head into it (``--prune``: only new objects come, deleted refs go), so
the listing and the builds see the same commits; ``git ls-remote`` only when mirrors are off
(``SHIPYARD_GIT_MIRRORS=false``).

A plain git remote knows refs and shas only: no author, title, state or dates. Those fields
are present (the clients' types require them) and empty, except ``state`` (``OPEN``: a
``refs/pull/N/head`` ref exists) and ``destination`` (the workload's branch, Northflank's
target for its builds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.builds.errors import Upstream
from shipyard.pipeline.errors import PipelineError
from shipyard.pipeline.mirror import read_refs_via_mirror
from shipyard.pipeline.remote_policy import check_remote
from shipyard.pipeline.source_git import list_remote_refs

BRANCH_PREFIX = "refs/heads/"
PR_REFS = re.compile(r"^refs/(?P<kind>pull|merge-requests)/(?P<n>[1-9][0-9]{0,15})/head$")
PATTERNS = ("refs/heads/*", "refs/pull/*/head", "refs/merge-requests/*/head")


def read_refs(
    url: str,
    *,
    allow_private: bool,
    allowed_networks: tuple[str, ...],
    allowed_local_roots: tuple[Path, ...],
    timeout_s: float,
    mirror: Path | None = None,
) -> dict[str, str]:
    """The remote's branch and PR refs, through ``mirror`` (the project's mirror of ``url``)
    when given. Blocking (runs git): call it off the event loop."""
    try:
        pin = check_remote(url, allow_private=allow_private, allowed_networks=allowed_networks)
        if mirror is not None:
            return read_refs_via_mirror(
                url, mirror, timeout_s=timeout_s, allowed_local_roots=allowed_local_roots, pin=pin
            )
        return list_remote_refs(
            url, PATTERNS, timeout_s=timeout_s, allowed_local_roots=allowed_local_roots, pin=pin
        )
    except PipelineError as exc:
        # Messages are already free of credentials (source_git strips userinfo).
        raise Upstream(str(exc), {"repository": "unreachable"}) from None


def branches(refs: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for ref, sha in refs.items():
        if ref.startswith(BRANCH_PREFIX):
            name = ref[len(BRANCH_PREFIX) :]
            out.append({"name": name, "id": name, "commit": {"sha": sha, "author": {"login": ""}}})
    return sorted(out, key=lambda b: str(b["name"]))


def pull_requests(refs: Mapping[str, str], destination: str | None) -> list[dict[str, Any]]:
    """Newest (highest number) first. A number present as both a GitHub and a GitLab ref
    is listed once (the GitHub one, which the build's fetch tries first)."""
    seen: dict[int, dict[str, Any]] = {}
    for ref, sha in sorted(refs.items(), key=lambda item: item[0].startswith("refs/merge")):
        match = PR_REFS.match(ref)
        if match is None:
            continue
        number = int(match["n"])
        if number in seen:
            continue
        label = "Pull request" if match["kind"] == "pull" else "Merge request"
        seen[number] = {
            "id": number,
            "state": "OPEN",
            "title": f"{label} #{number}",
            "source": ref,
            "destination": destination or "",
            "sha": sha,
            "created_at": "",
            "updated_at": "",
            "html_url": "",
        }
    return [seen[n] for n in sorted(seen, reverse=True)]
