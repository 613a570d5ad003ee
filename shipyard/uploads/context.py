"""The client's side of ``shipyard build PATH``: the directory as a gzip'd tar, produced
while it is sent (never whole in memory or on disk), honouring ``.dockerignore``.

``.dockerignore`` rules are Docker's: a pattern is matched against the path from the
context's root (``*.md`` is the root's Markdown files only, ``**/*.md`` every one), a
directory pattern excludes what is under it, ``!`` re-includes, the last match wins. Each
pattern is anchored (a leading ``/``) and handed to pathspec's gitignore patterns, which then
means the same. The root ``Dockerfile`` is always sent (Docker sends it too).

Entries keep their mode and modification time (a build of an upload pins its image time to
the newest one) and carry no owner names or ids; sockets, devices and FIFOs are skipped."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pathspec

DOCKERIGNORE = ".dockerignore"
ALWAYS_SENT = frozenset({"Dockerfile"})


class ContextTooLarge(Exception):
    pass


def ignore_spec(root: Path) -> pathspec.PathSpec[Any] | None:
    try:
        text = (root / DOCKERIGNORE).read_text()
    except FileNotFoundError:
        return None
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/") if pattern not in (".", "") else ""
        if not pattern or pattern == ".":
            continue
        lines.append(("!" if negate else "") + "/" + pattern)
    return pathspec.PathSpec.from_lines("gitignore", lines) if lines else None


def included(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything to send, parents before children, sorted."""
    spec = ignore_spec(root)
    # Without a re-inclusion an excluded directory need not be walked at all.
    negations = spec is not None and any(p.include is False for p in spec.patterns)

    def walk(directory: Path, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(directory) as entries:
            children = sorted(entries, key=lambda e: e.name)
        for entry in children:
            relative = f"{prefix}{entry.name}"
            info = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(info.st_mode)
            ignored = (
                spec is not None
                and relative not in ALWAYS_SENT
                and spec.match_file(relative + ("/" if is_dir else ""))
            )
            if is_dir:
                if ignored and not negations:
                    continue
                if not ignored:
                    yield relative, info
                yield from walk(Path(entry.path), relative + "/")
            elif not ignored:
                yield relative, info

    yield from walk(root, "")


class _Chunks:
    """A write-only file that tarfile streams into; the generator drains it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def stream_context(
    root: Path,
    *,
    max_bytes: int,
    on_skip: Callable[[str], None] | None = None,
    chunk_bytes: int = 256 * 1024,
) -> Iterator[bytes]:
    """Yield the context under ``root`` as tar.gz chunks. Raises ``ContextTooLarge`` as soon
    as the files sent add up to more than ``max_bytes``."""
    sink = _Chunks()
    total = 0
    with tarfile.open(fileobj=sink, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for relative, info in included(root):
            path = root / relative
            member = tarfile.TarInfo(relative)
            member.mode = stat.S_IMODE(info.st_mode)
            member.mtime = int(info.st_mtime)
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            if stat.S_ISDIR(info.st_mode):
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
            elif stat.S_ISLNK(info.st_mode):
                member.type = tarfile.SYMTYPE
                member.linkname = os.readlink(path)
                tar.addfile(member)
            elif stat.S_ISREG(info.st_mode):
                total += info.st_size
                if total > max_bytes:
                    raise ContextTooLarge(
                        f"the context is larger than {max_bytes} bytes; add what the build "
                        "does not need to .dockerignore"
                    )
                member.size = info.st_size
                with path.open("rb") as handle:
                    tar.addfile(member, handle)
            else:
                if on_skip is not None:
                    on_skip(relative)
                continue
            if sum(len(p) for p in sink.parts) >= chunk_bytes:
                yield sink.take()
    if rest := sink.take():
        yield rest
