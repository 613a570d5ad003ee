"""Build files are placed relative to the repository root and may only add files; paths stay
inside the source (links resolved)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shipyard.builds.request import DockerOverrides, Overrides
from shipyard.builds.secret_files import SecretFile
from shipyard.pipeline.context import prepare
from shipyard.pipeline.errors import PipelineError


def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\n")
    (root / "README.md").write_text("repo readme\n")
    return root


def place(root: Path, files: dict[str, bytes], work_dir: str = "/app") -> None:
    overrides = Overrides(
        build_files={p: SecretFile(v) for p, v in files.items()},
        secret_mounts={"tok": SecretFile(b"mounted")},
        docker=DockerOverrides(dockerfile_path="/app/Dockerfile", work_dir=work_dir),
    )
    prepared = prepare(root, overrides, root.parent / "secrets")
    assert prepared.secrets["tok"].read_bytes() == b"mounted"


def test_files_are_placed_relative_to_the_repository_root(tmp_path: Path) -> None:
    root = source(tmp_path)
    place(root, {"/app/config/settings.json": b"{}", "/top.txt": b"top", "/new/dir/f": b"f"})
    assert (root / "app" / "config" / "settings.json").read_bytes() == b"{}"
    assert (root / "top.txt").read_bytes() == b"top"  # not under dockerWorkDir /app
    assert (root / "new" / "dir" / "f").read_bytes() == b"f"
    assert not (root / "app" / "top.txt").exists()


@pytest.mark.parametrize("path", ["/README.md", "/app/Dockerfile", "/app"])
def test_a_file_that_would_overwrite_the_repository_fails_naming_the_path(
    tmp_path: Path, path: str
) -> None:
    root = source(tmp_path)
    with pytest.raises(PipelineError, match=re.escape(f"build file {path} would overwrite")):
        place(root, {path: b"evil"})
    assert (root / "README.md").read_text() == "repo readme\n"


@pytest.mark.parametrize("target", ["README.md", "missing", "/etc/hostname"])
def test_a_link_at_the_target_is_a_collision(tmp_path: Path, target: str) -> None:
    root = source(tmp_path)
    (root / "link").symlink_to(target)
    with pytest.raises(PipelineError, match="build file /link would overwrite"):
        place(root, {"/link": b"evil"})
    assert os.readlink(root / "link") == target


def test_a_parent_that_is_a_file_fails_cleanly(tmp_path: Path) -> None:
    root = source(tmp_path)
    with pytest.raises(PipelineError, match=re.escape("build file /README.md/x cannot be placed")):
        place(root, {"/README.md/x": b"x"})


def test_a_parent_link_out_of_the_source_is_refused(tmp_path: Path) -> None:
    root = source(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "conf").symlink_to(outside)
    with pytest.raises(PipelineError, match="outside the source"):
        place(root, {"/conf/planted": b"x"})
    assert not (outside / "planted").exists()


def test_a_parent_link_inside_the_source_is_followed(tmp_path: Path) -> None:
    root = source(tmp_path)
    (root / "alias").symlink_to("app")
    place(root, {"/alias/extra": b"via link"})
    assert (root / "app" / "extra").read_bytes() == b"via link"


def test_an_inline_dockerfile_replaces_the_checkouts(tmp_path: Path) -> None:
    root = source(tmp_path)
    inline = "FROM scratch\nCOPY README.md /r\n# é 🚀\r\n"
    overrides = Overrides(
        docker=DockerOverrides(
            dockerfile_path="/missing/Dockerfile.in", work_dir="/", dockerfile_contents=inline
        )
    )
    prepared = prepare(root, overrides, root.parent / "secrets")
    assert prepared.text == inline  # the path is not read (nor refused for ".in")
    assert prepared.dockerfile is None and prepared.display_dockerfile == "dockerfileContents"
    assert prepared.context_dir == root.resolve()  # still dockerWorkDir of the checkout


def test_without_inline_text_the_checkouts_dockerfile_is_read(tmp_path: Path) -> None:
    root = source(tmp_path)
    overrides = Overrides(docker=DockerOverrides(dockerfile_path="/app/Dockerfile"))
    prepared = prepare(root, overrides, root.parent / "secrets")
    assert prepared.text == "FROM scratch\n"
    assert prepared.dockerfile == (root / "app" / "Dockerfile").resolve()


def test_an_inline_dockerfile_still_needs_the_work_dir(tmp_path: Path) -> None:
    root = source(tmp_path)
    overrides = Overrides(
        docker=DockerOverrides(work_dir="/nope", dockerfile_contents="FROM scratch\n")
    )
    with pytest.raises(PipelineError, match="dockerWorkDir /nope not found"):
        prepare(root, overrides, root.parent / "secrets")
