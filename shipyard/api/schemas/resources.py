"""Create bodies for projects, services and jobs (the build-relevant subset is validated;
other fields are accepted and stored)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from shipyard.api.schemas.builds import (
    AbsoluteFilePath,
    ArgName,
    DockerFilePath,
    DockerTarget,
    DockerWorkDir,
    SecretContent,
    SecretId,
    no_dot_segments,
)
from shipyard.api.schemas.common import Name, Open
from shipyard.builds.errors import InvalidRequest
from shipyard.builds.relevant_commit import MAX_CI_FLAG_CHARS, MAX_CI_FLAGS, check_rules

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^-].*$")
GIT_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")


def check_repo_url(url: str) -> str:
    if url.startswith(GIT_SCHEMES) or _SCP_LIKE.match(url) or url.startswith("/"):
        return url
    raise ValueError(
        "must be an https, http, ssh, git or file URL, user@host:path, or an absolute path"
    )


class CreateProject(Open):
    name: Name
    description: str | None = Field(default=None, max_length=2000)
    region: str | None = Field(default=None, max_length=64)


class VcsData(Open):
    projectUrl: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    projectType: Annotated[str, StringConstraints(max_length=32)] = "self-hosted"
    projectBranch: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @field_validator("projectUrl")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_repo_url(value)


class Buildkit(Open):
    useCache: bool | None = None


class DockerfileSettings(Open):
    dockerFilePath: DockerFilePath = "/Dockerfile"
    dockerWorkDir: DockerWorkDir = "/"
    buildkit: Buildkit | None = None


class BuildSettings(Open):
    dockerfile: DockerfileSettings | None = None


def _not_blank(flag: str) -> str:
    if not flag.strip():
        raise ValueError("a commit ignore flag may not be blank")
    return flag


# Matched as substrings of commit messages: bounded in number and length, never blank (a
# blank flag would be in nearly every message).
CiIgnoreFlags = Annotated[
    list[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=MAX_CI_FLAG_CHARS),
            AfterValidator(_not_blank),
        ]
    ],
    Field(max_length=MAX_CI_FLAGS),
]


class BuildConfiguration(Open):
    pathIgnoreRules: list[Annotated[str, StringConstraints(max_length=1024)]] | None = None
    isAllowList: bool | None = None
    ciIgnoreFlagsEnabled: bool | None = None
    ciIgnoreFlags: CiIgnoreFlags | None = None

    @field_validator("pathIgnoreRules")
    @classmethod
    def _bounded(cls, value: list[str] | None) -> list[str] | None:
        try:
            check_rules(value or [])
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None  # pydantic's 400 names the field
        return value


class BuildSandbox(BaseModel):
    """Shipyard's own extension: a service may narrow the operator's sandbox for its builds
    (never widen it: wider values are clamped to the operator's, and the log says so)."""

    model_config = {"extra": "forbid"}

    network: Literal["isolated", "none", "host"] | None = None
    memoryMb: int | None = Field(default=None, ge=64)
    pids: int | None = Field(default=None, ge=32)
    cpus: float | None = Field(default=None, gt=0)


class Retention(BaseModel):
    """Shipyard's own extension: how many images garbage collection keeps for this service
    (over the operator's ``SHIPYARD_GC_KEEP_LAST`` / ``SHIPYARD_GC_KEEP_DAYS``)."""

    model_config = {"extra": "forbid"}

    keepLast: int | None = Field(default=None, ge=1, le=100_000)
    keepDays: float | None = Field(default=None, ge=0, le=36_500)


class CreateWorkload(Open):
    name: Name
    description: str | None = Field(default=None, max_length=2000)
    vcsData: VcsData
    buildSettings: BuildSettings | None = None
    buildConfiguration: BuildConfiguration | None = None
    buildArguments: dict[ArgName, str] | None = None
    # Secrets like a build's overrides: sealed with buildArguments, never kept in ``spec``.
    buildFiles: dict[AbsoluteFilePath, SecretContent] | None = None
    dockerSecretMounts: dict[SecretId, SecretContent] | None = None
    buildSandbox: BuildSandbox | None = None
    retention: Retention | None = None

    @field_validator("buildFiles")
    @classmethod
    def _file_paths(cls, value: dict[str, SecretContent] | None) -> dict[str, SecretContent] | None:
        for path in value or {}:
            no_dot_segments(path)
        return value


# Never stored in a workload's clear ``spec`` nor echoed: what the create handler seals.
SECRET_FIELDS = frozenset({"buildArguments", "buildFiles", "dockerSecretMounts"})


class WorkloadOut(BaseModel):
    id: str
    name: str
    description: str | None = None
    createdAt: str


class PatchVcsData(Open):
    projectUrl: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    projectType: Annotated[str, StringConstraints(max_length=32)] | None = None
    projectBranch: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @field_validator("projectUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_repo_url(value)


class PatchWorkload(Open):
    """PATCH …/services/combined|build/{id}, …/jobs/manual|cron/{id}: any subset of the create
    body (``name`` cannot change: it is the id). Merged into the stored settings, and the
    result is checked by the create body's rules."""

    description: str | None = Field(default=None, max_length=2000)
    vcsData: PatchVcsData | None = None
    buildSettings: BuildSettings | None = None
    buildConfiguration: BuildConfiguration | None = None
    buildArguments: dict[ArgName, str] | None = None
    buildSandbox: BuildSandbox | None = None
    retention: Retention | None = None


class BuildOptions(Open):
    """POST …/build-options (js-client ``UpdateServiceBuildoptionsData``): the Dockerfile
    settings, plus the ``buildConfiguration`` fields flat beside them."""

    dockerfile: DockerfileSettings | None = None
    pathIgnoreRules: list[Annotated[str, StringConstraints(max_length=1024)]] | None = None
    isAllowList: bool | None = None
    ciIgnoreFlagsEnabled: bool | None = None
    ciIgnoreFlags: CiIgnoreFlags | None = None
    dockerfileTarget: DockerTarget | None = None
    includeGitFolder: bool | None = None
    fullGitClone: bool | None = None


class BuildSource(Open):
    """POST …/build-source (js-client ``UpdateServiceBuildsourceData``)."""

    projectUrl: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    projectType: Annotated[str, StringConstraints(max_length=32)] | None = None
    projectBranch: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @field_validator("projectUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_repo_url(value)
