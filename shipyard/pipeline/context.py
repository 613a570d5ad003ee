"""The build context: work dir and Dockerfile inside the source (or the build's inline
``dockerfileContents`` instead of the file), build files placed at their path relative to the
repository root (as Northflank does: the Dockerfile reaches them through its context), secret
mounts written 0600 beside it (never inside the context)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.builds.request import Overrides
from shipyard.pipeline.errors import PipelineError

# How an inline Dockerfile is named in the log and in check errors.
INLINE_DOCKERFILE = "dockerfileContents"


@dataclass(frozen=True)
class PreparedContext:
    context_dir: Path
    # The checkout's Dockerfile; None for an inline one (``overrides.docker.dockerfileContents``).
    dockerfile: Path | None
    display_dockerfile: str
    secrets: Mapping[str, Path]
    # The Dockerfile's text, to check and build (buildah never reads ``dockerfile`` itself).
    text: str = ""
    # The ignore files buildah may read (whether or not they exist).
    ignore_files: tuple[Path, ...] = ()


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root``/``relative`` with symlinks resolved, refused if it leaves ``root``."""
    real_root = root.resolve()
    candidate = (real_root / relative.lstrip("/")).resolve()
    if candidate != real_root and real_root not in candidate.parents:
        raise PipelineError(f"{what} /{relative.lstrip('/')} points outside the source")
    return candidate


def _place_build_file(source_root: Path, path: str, data: bytes) -> None:
    """Write a build file at ``path`` under the repository root. Northflank refuses to
    overwrite a repository file, so anything already there (a file, a directory, a link,
    even a dangling one) fails the build, naming the path."""
    relative = path.lstrip("/")
    # Resolved: the directories created below are real ones inside the source.
    parent = _inside(source_root, os.path.dirname(relative), "build file")
    target = parent / os.path.basename(relative)
    # ``lexists``: a link at the target is a collision too, wherever it points.
    if os.path.lexists(target):
        raise PipelineError(
            f"build file {path} would overwrite {path} in the repository "
            "(build files may only add files)"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file in the repository
        raise PipelineError(f"build file {path} cannot be placed: {exc.strerror}") from None
    try:
        # O_EXCL | O_NOFOLLOW: nothing may have appeared there since the check.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        raise PipelineError(f"build file {path} would overwrite {path} in the repository") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def prepare(source_root: Path, overrides: Overrides, secrets_dir: Path) -> PreparedContext:
    work_dir = overrides.docker.work_dir or "/"
    dockerfile_path = overrides.docker.dockerfile_path or "/Dockerfile"
    context_dir = _inside(source_root, work_dir, "dockerWorkDir")
    if not context_dir.is_dir():
        raise PipelineError(f"dockerWorkDir {work_dir} not found in the source")
    inline = overrides.docker.dockerfile_contents
    dockerfile: Path | None = None
    ignores = [context_dir / ".dockerignore", context_dir / ".containerignore"]
    if inline is not None:
        # Built instead of the checkout's file: dockerFilePath is not read at all.
        text, display = inline, INLINE_DOCKERFILE
    else:
        if dockerfile_path.endswith(".in"):
            # buildah runs such files through cpp: #define and #include would change the
            # text after Shipyard checked it.
            raise PipelineError(
                f"dockerFilePath {dockerfile_path}: Dockerfiles ending in .in (C-preprocessed "
                "by buildah) are not supported"
            )
        dockerfile = _inside(source_root, dockerfile_path, "dockerFilePath")
        if not dockerfile.is_file():
            raise PipelineError(f"Dockerfile not found at {dockerfile_path}")
        text, display = dockerfile.read_text(errors="replace"), dockerfile_path
        ignores += [
            dockerfile.with_name(dockerfile.name + ".dockerignore"),
            dockerfile.with_name(dockerfile.name + ".containerignore"),
        ]
    # buildah (as the build user) reads these itself: a link out of the source would let a
    # build learn what a host file holds from which context files are sent.
    for ignore in ignores:
        if ignore.is_symlink():
            _inside(source_root, str(ignore.relative_to(source_root.resolve())), ignore.name)

    for path, content in sorted(overrides.build_files.items()):
        _place_build_file(source_root, path, content.data)

    secrets: dict[str, Path] = {}
    if overrides.secret_mounts:
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for secret_id, content in overrides.secret_mounts.items():
            file = secrets_dir / secret_id
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content.data)
            secrets[secret_id] = file
    return PreparedContext(context_dir, dockerfile, display, secrets, text, tuple(ignores))
