"""The build request as the domain sees it, and the rules that depend on the target's kind.

Shape rules (types, patterns, lengths) are enforced by the API schemas; the rules here need to
know what is being built (a build service, a combined service or a job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shipyard.builds.errors import InvalidRequest
from shipyard.builds.refs import is_valid_branch
from shipyard.builds.secret_files import MAX_SECRET_BYTES as MAX_SECRET_BYTES
from shipyard.builds.secret_files import SecretFile
from shipyard.builds.secret_files import decode_secret as decode_secret  # for the routers

MAX_SECRETS_TOTAL_BYTES = 8 * 1024 * 1024


class WorkloadKind(StrEnum):
    COMBINED = "combined"
    BUILD = "build"
    MANUAL_JOB = "manual"
    CRON_JOB = "cron"

    @property
    def is_job(self) -> bool:
        return self in (WorkloadKind.MANUAL_JOB, WorkloadKind.CRON_JOB)


class SourceKind(StrEnum):
    GIT = "git"
    BUNDLE = "bundle"
    UPLOAD = "upload"  # a context uploaded to Shipyard (shipyard.uploads), built like a bundle


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    sha: str | None = None
    branch: str | None = None
    pull_request_id: int | None = None
    bundle_url: str | None = None
    upload_id: str | None = None


# ``overrides.docker.dockerfileContents``: an inline Dockerfile, at most this many UTF-8 bytes.
MAX_DOCKERFILE_CONTENTS_BYTES = 256 * 1024


@dataclass(frozen=True)
class DockerOverrides:
    dockerfile_path: str | None = None
    work_dir: str | None = None
    target: str | None = None
    # An inline Dockerfile: built instead of the checkout's ``dockerfile_path`` (the context
    # is still ``work_dir`` of the checkout). Not secret: stored in clear with the build.
    dockerfile_contents: str | None = None


@dataclass(frozen=True)
class Overrides:
    build_arguments: Mapping[str, str] = field(default_factory=dict)
    build_files: Mapping[str, SecretFile] = field(default_factory=dict)
    secret_mounts: Mapping[str, SecretFile] = field(default_factory=dict)
    docker: DockerOverrides = field(default_factory=DockerOverrides)

    def to_secret_json(self) -> dict[str, Any]:
        """The part stored encrypted: values that may be secret."""
        return {
            "buildArguments": dict(self.build_arguments),
            "buildFiles": {k: v.to_json() for k, v in self.build_files.items()},
            "dockerSecretMounts": {k: v.to_json() for k, v in self.secret_mounts.items()},
        }

    @classmethod
    def from_secret_json(cls, data: Mapping[str, Any], docker: DockerOverrides) -> Overrides:
        return cls(
            build_arguments=dict(data.get("buildArguments", {})),
            build_files={k: SecretFile.from_json(v) for k, v in data.get("buildFiles", {}).items()},
            secret_mounts={
                k: SecretFile.from_json(v) for k, v in data.get("dockerSecretMounts", {}).items()
            },
            docker=docker,
        )

    def under(self, overrides: Overrides, docker: DockerOverrides) -> Overrides:
        """``self`` (stored values) merged under ``overrides``: the build's value wins per
        build argument, file path and secret id."""
        return Overrides(
            build_arguments={**self.build_arguments, **overrides.build_arguments},
            build_files={**self.build_files, **overrides.build_files},
            secret_mounts={**self.secret_mounts, **overrides.secret_mounts},
            docker=docker,
        )

    def templated(self) -> Overrides:
        """Build files and secret mounts with ``${NAME}`` replaced from these build
        arguments (Northflank's dynamic templating); build arguments are used as given."""
        args = self.build_arguments
        return Overrides(
            build_arguments=self.build_arguments,
            build_files={k: v.templated(args) for k, v in self.build_files.items()},
            secret_mounts={k: v.templated(args) for k, v in self.secret_mounts.items()},
            docker=self.docker,
        )

    def secret_values(self) -> list[bytes]:
        """Every value the log redactor masks: build files, secret mounts and build-argument
        values. Build arguments are secret too: stored ones are encrypted and need more
        permission to read than the build's log, so they must not show there (the redactor
        skips values under 4 characters, which would mask ordinary words)."""
        return [
            *(f.data for f in self.build_files.values()),
            *(f.data for f in self.secret_mounts.values()),
            *(value.encode() for value in self.build_arguments.values()),
        ]


@dataclass(frozen=True)
class BuildRequest:
    source: SourceSpec
    overrides: Overrides = field(default_factory=Overrides)


def resolve_source(
    kind: WorkloadKind,
    *,
    default_branch: str | None,
    sha: str | None,
    branch: str | None,
    pull_request_id: int | None,
    bundle_url: str | None,
    upload_id: str | None = None,
) -> SourceSpec:
    """Apply the seeds' rules on which source fields each kind of target accepts. An upload
    follows the bundle rules (services only, no pull request)."""
    if bundle_url is not None or upload_id is not None:
        field = "bundleUrl" if bundle_url is not None else "uploadId"
        if kind.is_job:
            raise InvalidRequest(f"{field} is not supported for job builds", {field: "unsupported"})
        if pull_request_id is not None:
            raise InvalidRequest(
                f"pullRequestId cannot be combined with {field}", {"pullRequestId": "unsupported"}
            )
        if branch is not None and not is_valid_branch(branch):
            raise InvalidRequest(
                f"branch '{branch}' is not a valid branch name", {"branch": "invalid"}
            )
        if upload_id is not None:
            return SourceSpec(SourceKind.UPLOAD, sha=sha, branch=branch, upload_id=upload_id)
        return SourceSpec(SourceKind.BUNDLE, sha=sha, branch=branch, bundle_url=bundle_url)

    if kind is WorkloadKind.BUILD:
        if branch is None and pull_request_id is None:
            raise InvalidRequest(
                "build services require either branch or pullRequestId",
                {"branch": "required", "pullRequestId": "required"},
            )
        if branch is not None and pull_request_id is not None:
            raise InvalidRequest(
                "branch and pullRequestId cannot both be provided",
                {"branch": "conflict", "pullRequestId": "conflict"},
            )
    else:
        target = "jobs" if kind.is_job else "combined services"
        for name, value in (("branch", branch), ("pullRequestId", pull_request_id)):
            if value is not None:
                raise InvalidRequest(
                    f"{name} is only supported by build services; "
                    f"{target} build their configured branch",
                    {name: "unsupported"},
                )
        branch = default_branch
        if branch is None:
            raise InvalidRequest("this target has no vcsData.projectBranch configured")

    if branch is not None and not is_valid_branch(branch):
        raise InvalidRequest(f"branch '{branch}' is not a valid branch name", {"branch": "invalid"})
    return SourceSpec(SourceKind.GIT, sha=sha, branch=branch, pull_request_id=pull_request_id)


def check_secret_budget(overrides: Overrides) -> None:
    total = sum(
        len(f.data) for f in (*overrides.build_files.values(), *overrides.secret_mounts.values())
    )
    if total > MAX_SECRETS_TOTAL_BYTES:
        raise InvalidRequest(
            f"buildFiles and dockerSecretMounts together exceed {MAX_SECRETS_TOTAL_BYTES} bytes"
        )
