"""Pruning a project's buildah store: the images of builds the policy no longer keeps, the
stage-cache entries beyond the newest few per stage (``pipeline.stage_cache``), the dangling
layers they leave, and the whole store when it still exceeds the budget (it is a cache:
every kept image is in the registry)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from shipyard.gc.disk import usage
from shipyard.pipeline.stage_cache import stale_names
from shipyard.sandbox.sandbox import ProjectStore

_PRUNE_ROUNDS = 5  # each round frees one more level of a removed image's cache chain


@dataclass
class StoreResult:
    project_id: str
    bytes_before: int = 0
    bytes_after: int = 0
    images_removed: list[str] = field(default_factory=list)
    emptied: bool = False
    skipped: str | None = None  # why nothing was done
    errors: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)


def doomed_names(
    names: Collection[str], project_id: str, doomed: Collection[tuple[str, str]]
) -> list[str]:
    """Image names ``<registry>/<project>/<service>:<build id>`` of the doomed builds
    (``(service slug, build id)``); the registry part may differ (its port can change)."""
    wanted = {f"/{project_id}/{slug}:{build_id}" for slug, build_id in doomed}
    return sorted(n for n in names if any(n.endswith(w) for w in wanted))


def images(project: ProjectStore) -> list[tuple[str, list[str], float]]:
    """(id, names, created time) of every image in the project's store."""
    done = project.buildah("images", "--json", timeout_s=120)
    if done.returncode != 0:
        raise RuntimeError(f"buildah images: {done.stderr.strip()}")
    entries = json.loads(done.stdout or "[]") or []
    return [
        (str(e.get("id")), [str(n) for n in e.get("names") or []], float(e.get("created") or 0))
        for e in entries
    ]


def prune(
    project: ProjectStore,
    project_id: str,
    doomed: Collection[tuple[str, str]],
    *,
    budget_bytes: int,
    dry_run: bool,
) -> StoreResult:
    """The caller holds the store (``Sandbox.exclusive``): no build of the project runs."""
    result = StoreResult(project_id, bytes_before=usage(project.dirs.store))
    if not (project.dirs.store / "root").is_dir():
        result.bytes_after = result.bytes_before
        return result
    stored = images(project)
    names = doomed_names([n for _, named, _ in stored for n in named], project_id, doomed)
    names += stale_names(stored)
    result.images_removed = names
    if dry_run:
        result.bytes_after = result.bytes_before
        return result
    if names:
        # By name: an image that also carries a kept build's name only loses the doomed one.
        done = project.buildah("rmi", *names)
        if done.returncode != 0:
            result.errors.append(f"buildah rmi: {done.stderr.strip()[-300:]}")
    before = result.bytes_before
    for _ in range(_PRUNE_ROUNDS):
        done = project.buildah("rmi", "--prune")
        if done.returncode != 0:
            result.errors.append(f"buildah rmi --prune: {done.stderr.strip()[-300:]}")
            break
        after = usage(project.dirs.store)
        if after >= before:
            break
        before = after
    result.bytes_after = usage(project.dirs.store)
    if result.bytes_after > budget_bytes:
        project.empty()
        result.emptied = True
        result.bytes_after = usage(project.dirs.store)
    return result
