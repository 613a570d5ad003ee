"""The start-build bodies of the seeds, their rules, and the Build response."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

from shipyard.api.schemas.common import Sha, Strict
from shipyard.builds.request import MAX_DOCKERFILE_CONTENTS_BYTES

ArgName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-/._]+$", max_length=256)]
AbsoluteFilePath = Annotated[
    str, StringConstraints(pattern=r"^\/([a-zA-Z0-9-._]+\/)*[a-zA-Z0-9-._]+$", max_length=1024)
]
SecretId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
]
DockerFilePath = Annotated[
    str, StringConstraints(pattern=r"^\/([a-zA-Z0-9-._]+\/)*[a-zA-Z0-9-._]+$", max_length=1024)
]
DockerWorkDir = Annotated[
    str, StringConstraints(pattern=r"^\/([a-zA-Z0-9-._]+\/)*[a-zA-Z0-9-._]*$", max_length=1024)
]
DockerTarget = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9-_]+$", max_length=128)]


def no_dot_segments(path: str) -> str:
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("path must not contain '.' or '..' segments")
    return path


class SecretContent(Strict):
    """Northflank's form: ``data`` is always base64; ``encoding`` is kept and returned."""

    data: str = Field(description="base64 encoded string of the file contents")
    encoding: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        default="utf-8", description="Original encoding of the file"
    )


class DockerSettings(Strict):
    dockerFilePath: DockerFilePath | None = None
    dockerWorkDir: DockerWorkDir | None = None
    dockerfileTarget: DockerTarget | None = None
    dockerfileContents: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="An inline Dockerfile, built instead of dockerFilePath (at most 256 KiB)",
    )

    @field_validator("dockerFilePath", "dockerWorkDir")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return None if value is None else no_dot_segments(value)

    @field_validator("dockerfileContents")
    @classmethod
    def _bounded(cls, value: str | None) -> str | None:
        # Bytes, not characters: what is stored and written for buildah.
        if value is not None and len(value.encode()) > MAX_DOCKERFILE_CONTENTS_BYTES:
            raise ValueError(f"longer than {MAX_DOCKERFILE_CONTENTS_BYTES} bytes (UTF-8)")
        return value


class SecretOverrides(Strict):
    """Build arguments, secret files and secret mounts: what a build or a workload stores
    encrypted."""

    buildArguments: dict[ArgName, str] | None = Field(
        default=None, description="Take precedence over the stored build arguments"
    )
    buildFiles: dict[AbsoluteFilePath, SecretContent] | None = Field(
        default=None,
        description="Secret files, encrypted at rest, placed at that path in the context",
    )
    dockerSecretMounts: dict[SecretId, SecretContent] | None = Field(
        default=None, description="Exposed only to RUN --mount=type=secret,id=…"
    )

    @field_validator("buildFiles")
    @classmethod
    def _file_paths(cls, value: dict[str, SecretContent] | None) -> dict[str, SecretContent] | None:
        for path in value or {}:
            no_dot_segments(path)
        return value


class BuildOverrides(SecretOverrides):
    docker: DockerSettings | None = None


class StartBuildFromBundle(Strict):
    """Build from bundle."""

    bundleUrl: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    branch: str | None = None
    sha: Sha | None = None
    overrides: BuildOverrides | None = None

    @field_validator("bundleUrl")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http or https URL")
        return value


class StartBuildFromUpload(Strict):
    """Build from an uploaded context (Shipyard's own: ``POST /v1/projects/{p}/uploads``
    answers the id). Built like a bundle; the upload is used once."""

    uploadId: Annotated[str, StringConstraints(pattern=r"^upload-[0-9a-f]{24}$")]
    branch: str | None = None
    sha: Sha | None = None
    overrides: BuildOverrides | None = None


class StartBuildFromGit(Strict):
    """Build from git repository."""

    sha: Sha | None = Field(
        default=None, description="If absent, builds the most recent relevant commit"
    )
    branch: str | None = Field(default=None, max_length=255)
    pullRequestId: Annotated[int, Field(ge=1, le=2**53)] | None = None
    overrides: BuildOverrides | None = None


def _variant(value: Any) -> str:
    if isinstance(value, dict) and "bundleUrl" in value:
        return "bundle"
    if isinstance(value, BaseModel) and hasattr(value, "bundleUrl"):
        return "bundle"
    if isinstance(value, dict) and "uploadId" in value:
        return "upload"
    if isinstance(value, BaseModel) and hasattr(value, "uploadId"):
        return "upload"
    return "git"


StartServiceBuildBody = Annotated[
    Annotated[StartBuildFromBundle, Tag("bundle")]
    | Annotated[StartBuildFromUpload, Tag("upload")]
    | Annotated[StartBuildFromGit, Tag("git")],
    Discriminator(_variant),
]


class StartJobBuildBody(Strict):
    """Start a build (optionally with overrides for the current settings)."""

    sha: Sha | None = None
    overrides: BuildOverrides | None = None


class RegistryOut(BaseModel):
    uri: str | None = None
    # Shipyard's own: garbage collection removed the image (``uri`` no longer pulls).
    imageCollected: bool | None = None
    collectedAt: str | None = None


class BuildOut(BaseModel):
    id: str
    branch: str | None = None
    pullRequestId: int | None = None
    sha: str | None = None
    registry: RegistryOut | None = None
    createdAt: str
    status: str
    concluded: bool
    success: bool
    message: str | None = None
    buildConcludedAt: int | None = None
    bundleUrl: str | None = None
