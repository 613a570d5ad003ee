"""``shipyard build PATH``'s tar stream: .dockerignore with Docker's meaning, modes and
times kept, no owner names, links as links, a size cap."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from shipyard.uploads.context import ContextTooLarge, stream_context


def members(root: Path, **kwargs: int) -> dict[str, tarfile.TarInfo]:
    data = b"".join(stream_context(root, max_bytes=kwargs.get("max_bytes", 1 << 30)))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_dockerignore_is_anchored_at_the_root_with_exceptions(tmp_path: Path) -> None:
    write(tmp_path, {
        "Dockerfile": "FROM scratch\n",
        ".dockerignore": "# comment\n*.md\n!KEEP.md\nnode_modules\n**/*.log\n/secret.env\nDockerfile\n",
        "README.md": "r", "KEEP.md": "k", "docs/guide.md": "g",
        "node_modules/x/index.js": "x", "src/app.py": "a", "src/debug.log": "l", "secret.env": "s",
    })  # fmt: skip
    names = set(members(tmp_path))
    # *.md is the root's only (Docker's rule, unlike .gitignore's); the root Dockerfile is
    # always sent.
    assert {"Dockerfile", ".dockerignore", "KEEP.md", "docs", "docs/guide.md", "src",
            "src/app.py"} <= names  # fmt: skip
    assert not names & {"README.md", "node_modules", "node_modules/x/index.js", "src/debug.log",
                        "secret.env"}  # fmt: skip


def test_modes_times_and_links_are_kept_owners_are_not(tmp_path: Path) -> None:
    write(tmp_path, {"run.sh": "#!/bin/sh\n", "data.txt": "d"})
    (tmp_path / "run.sh").chmod(0o755)
    os.utime(tmp_path / "data.txt", (1_600_000_000, 1_600_000_000))
    (tmp_path / "link").symlink_to("data.txt")
    found = members(tmp_path)
    assert found["run.sh"].mode == 0o755
    assert found["data.txt"].mtime == 1_600_000_000
    assert found["link"].issym() and found["link"].linkname == "data.txt"
    assert all(m.uid == 0 and m.uname == "" for m in found.values())


def test_a_context_over_the_cap_stops_with_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, {"big": "x" * 5000})
    with pytest.raises(ContextTooLarge, match="larger than 1000 bytes"):
        members(tmp_path, max_bytes=1000)
