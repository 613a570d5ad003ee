"""Request bodies exactly as the API documents them (the seeds' start-build variants, the
create bodies of CONTRACT.md). Rules are the server's to enforce: nothing is validated here,
absent (``None``) arguments are left out."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["create_workload_body", "overrides_body", "secret_content", "start_build_body"]

# The file's bytes, its text (sent utf-8 encoded), or the documented ``{data, encoding}``
# object as is (``data`` already base64).
Content = bytes | str | Mapping[str, str]


def secret_content(value: Content) -> dict[str, str]:
    """Northflank's form: ``data`` is always base64 of the file's bytes, ``encoding`` the
    file's original text encoding (``utf-8`` for ``str`` and, by default, ``bytes``)."""
    if isinstance(value, Mapping):
        return dict(value)
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return {"data": base64.b64encode(raw).decode("ascii"), "encoding": "utf-8"}


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def overrides_body(
    *,
    build_arguments: Mapping[str, str] | None = None,
    build_files: Mapping[str, Content] | None = None,
    secret_mounts: Mapping[str, Content] | None = None,
    dockerfile_path: str | None = None,
    work_dir: str | None = None,
    target: str | None = None,
) -> dict[str, Any] | None:
    """The ``overrides`` object, or ``None`` when nothing is overridden."""
    docker = _without_none(
        {"dockerFilePath": dockerfile_path, "dockerWorkDir": work_dir, "dockerfileTarget": target}
    )
    overrides = _without_none(
        {
            "buildArguments": None if build_arguments is None else dict(build_arguments),
            "buildFiles": None
            if build_files is None
            else {path: secret_content(v) for path, v in build_files.items()},
            "dockerSecretMounts": None
            if secret_mounts is None
            else {key: secret_content(v) for key, v in secret_mounts.items()},
            "docker": docker or None,
        }
    )
    return overrides or None


def start_build_body(
    *,
    sha: str | None = None,
    branch: str | None = None,
    pull_request_id: int | None = None,
    bundle_url: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    upload_id: str | None = None,
) -> dict[str, Any]:
    """The bundle variant (``bundleUrl`` first, ``branch``/``sha`` as labels) when a bundle URL
    is given, else the git variant. ``{}`` builds the workload's configured source."""
    if bundle_url is not None:
        fields: dict[str, Any] = {"bundleUrl": bundle_url, "branch": branch, "sha": sha}
        fields["pullRequestId"] = pull_request_id  # not in the variant: the server says so
    elif upload_id is not None:  # Shipyard's own variant: an uploaded context
        fields = {"uploadId": upload_id, "branch": branch, "sha": sha}
        fields["pullRequestId"] = pull_request_id
    else:
        fields = {"sha": sha, "branch": branch, "pullRequestId": pull_request_id}
    fields["overrides"] = None if overrides is None else dict(overrides)
    return _without_none(fields)


def create_workload_body(
    name: str,
    *,
    repo_url: str,
    branch: str | None,
    description: str | None,
    project_type: str,
    dockerfile_path: str,
    work_dir: str,
    build_arguments: Mapping[str, str] | None,
    path_ignore_rules: Sequence[str] | None,
    is_allow_list: bool,
    use_cache: bool,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Body of ``POST …/services/{combined,build}`` and ``…/jobs/{manual,cron}``; ``extra``
    adds (or replaces) top-level fields."""
    configuration = (
        _without_none(
            {
                "pathIgnoreRules": None if path_ignore_rules is None else list(path_ignore_rules),
                "isAllowList": is_allow_list,
            }
        )
        if path_ignore_rules is not None or is_allow_list
        else None
    )
    body = _without_none(
        {
            "name": name,
            "description": description,
            "vcsData": _without_none(
                {"projectUrl": repo_url, "projectType": project_type, "projectBranch": branch}
            ),
            "buildSettings": {
                "dockerfile": {
                    "dockerFilePath": dockerfile_path,
                    "dockerWorkDir": work_dir,
                    "buildkit": {"useCache": use_cache},
                }
            },
            "buildConfiguration": configuration,
            "buildArguments": None if build_arguments is None else dict(build_arguments),
        }
    )
    return {**body, **extra}
