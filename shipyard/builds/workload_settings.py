"""A workload's build settings: the columns builds read, derived from its stored spec.

Builds read these columns (and ``spec``) when they run, not when they are queued, so an edit
(PUT, PATCH, build-options, build-source) is seen by the next build that starts.
"""

from __future__ import annotations

import copy
from typing import Any

from shipyard.builds.errors import InvalidRequest
from shipyard.builds.refs import is_valid_branch
from shipyard.builds.request import WorkloadKind
from shipyard.store.models import Workload

# Secret parts of a create/update body: sealed, never kept in the (echoed) spec.
SECRET_KEYS = ("buildArguments", "buildFiles", "dockerSecretMounts")


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: objects merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_branch(kind: WorkloadKind, branch: str | None) -> None:
    if kind is not WorkloadKind.BUILD and branch is None:
        raise InvalidRequest(
            "vcsData.projectBranch is required for combined services and jobs",
            {"vcsData.projectBranch": "required"},
        )
    if branch is not None and not is_valid_branch(branch):
        raise InvalidRequest(
            f"vcsData.projectBranch '{branch}' is not a valid branch name",
            {"vcsData.projectBranch": "invalid"},
        )


def apply(workload: Workload, spec: dict[str, Any]) -> None:
    """Set the columns builds read from ``spec`` (a validated create body minus name,
    description and secrets) and store ``spec``. The repository URL's credentials are
    handled by ``builds.service.store_repository_url``, not here."""
    vcs = spec.get("vcsData") or {}
    branch = vcs.get("projectBranch")
    check_branch(WorkloadKind(workload.kind), branch)
    dockerfile = (spec.get("buildSettings") or {}).get("dockerfile") or {}
    config = spec.get("buildConfiguration") or {}
    workload.vcs_type = vcs.get("projectType", "self-hosted")
    workload.vcs_branch = branch
    workload.dockerfile_path = dockerfile.get("dockerFilePath", "/Dockerfile")
    workload.docker_work_dir = dockerfile.get("dockerWorkDir", "/")
    workload.use_cache = (dockerfile.get("buildkit") or {}).get("useCache") is not False
    workload.path_ignore_rules = list(config.get("pathIgnoreRules") or [])
    workload.is_allow_list = bool(config.get("isAllowList"))
    workload.spec = spec
