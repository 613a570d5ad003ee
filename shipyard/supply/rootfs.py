"""An image's file tree read straight from its layers in the build's overlay store: nothing
from the image runs, no container or mount is made, and no link is followed on the host.

The layers' ``diff`` directories are merged bottom to top the way overlayfs shows them
(whiteouts: a 0/0 character device or a ``.wh.NAME`` file; opaque directories: the
``trusted.`` or ``user.overlay.opaque`` attribute, or ``.wh..wh..opq``). Links are resolved
inside the image's own tree (like a chroot), and files are opened beneath their layer with
``O_NOFOLLOW`` on every component, so a link in the image can never reach a host file."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A tree past this many entries is not read further (the SBOM says what was found).
MAX_ENTRIES = 1_000_000
_MAX_HOPS = 40  # the kernel's own limit on links in one lookup
_OPAQUE_ATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_WHITEOUT = ".wh."
_OPAQUE_MARK = ".wh..wh..opq"


class RootfsError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class File:
    layer: Path  # the layer's diff dir
    relative: str  # the path inside it


@dataclass(frozen=True, slots=True)
class Link:
    real: str  # the link in its layer; read when a lookup crosses it

    @property
    def target(self) -> str:
        try:
            return os.readlink(self.real)
        except OSError:
            return ""


Node = dict[str, "Node | File | Link"]


def layer_dirs(store_root: Path, image_id: str) -> list[Path]:
    """The ``diff`` dirs of ``image_id``'s layers in the overlay store at ``store_root``,
    bottom first, from containers/storage's own index files."""
    wanted = image_id.removeprefix("sha256:")
    try:
        images = json.loads((store_root / "overlay-images" / "images.json").read_text())
        layers: list[dict[str, object]] = []
        for name in ("layers.json", "volatile-layers.json"):
            path = store_root / "overlay-layers" / name
            if path.exists():
                layers += json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RootfsError(f"cannot read the image store: {exc}") from exc
    image = next((i for i in images if isinstance(i, dict) and i.get("id") == wanted), None)
    if image is None:
        raise RootfsError(f"image {image_id} is not in the store")
    parents = {str(layer.get("id")): layer.get("parent") for layer in layers}
    chain: list[Path] = []
    current = image.get("layer")
    while isinstance(current, str) and current:
        if current not in parents or len(chain) > 500:
            raise RootfsError(f"layer {current} of {image_id} is not in the store")
        chain.append(store_root / "overlay" / current / "diff")
        current = parents[current]
    return list(reversed(chain))


class ImageTree:
    """The merged tree of an image's layers."""

    def __init__(self, layers: list[Path]) -> None:
        self.root: Node = {}
        self.entries = 0
        self.truncated = False
        for layer in layers:
            self._merge(self.root, layer, str(layer), "")

    def _merge(self, node: Node, layer: Path, real: str, relative: str) -> None:
        if node and _is_opaque(real):
            node.clear()
        try:
            with os.scandir(real) as scan:
                entries = list(scan)
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if name == _OPAQUE_MARK:
                continue
            if name.startswith(_WHITEOUT):
                node.pop(name[len(_WHITEOUT) :], None)
                continue
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                self.truncated = True
                return
            # The entry's type from the directory itself (d_type): no stat per file.
            try:
                if entry.is_dir(follow_symlinks=False):
                    child = node.get(name)
                    if not isinstance(child, dict):
                        child = {}
                        node[name] = child
                    self._merge(child, layer, entry.path, f"{relative}{name}/")
                elif entry.is_symlink():
                    node[name] = Link(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    node[name] = File(layer, relative + name)
                else:  # a whiteout (0/0 character device), or a device the image ships
                    node.pop(name, None)
            except OSError:
                continue

    def lookup(self, path: str) -> File | None:
        """The regular file at ``path`` (links resolved inside the image), or None."""
        found = self._resolve(path.strip("/").split("/"))
        return found if isinstance(found, File) else None

    def directory(self, path: str) -> Node | None:
        """The entries of the directory at ``path`` (links resolved inside the image)."""
        found = self._resolve(path.strip("/").split("/"))
        return found if isinstance(found, dict) else None

    def _resolve(self, parts: list[str]) -> Node | File | Link | None:
        stack: list[Node] = [self.root]
        pending = [p for p in parts if p not in ("", ".")]
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            child = stack[-1].get(part)
            if isinstance(child, Link):
                hops += 1
                if hops > _MAX_HOPS:
                    return None
                if child.target.startswith("/"):
                    stack = [self.root]
                pending = [p for p in child.target.split("/") if p] + pending
                continue
            if child is None:
                return None
            if isinstance(child, File):
                return child if not pending else None
            stack.append(child)
        return stack[-1]

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every directory: (its path without a leading slash, its entries)."""
        todo: list[tuple[str, Node]] = [("", self.root)]
        while todo:
            path, node = todo.pop()
            yield path, node
            for name, child in sorted(node.items(), reverse=True):
                if isinstance(child, dict):
                    if not path and name in ("proc", "sys", "dev"):
                        continue
                    todo.append((f"{path}/{name}" if path else name, child))


def _is_opaque(real: str) -> bool:
    for attr in _OPAQUE_ATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(real, attr, follow_symlinks=False) == b"y":
                return True
    return os.path.lexists(os.path.join(real, _OPAQUE_MARK))


def read_file(file: File, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``file``, opened component by component beneath its layer
    with ``O_NOFOLLOW`` (a link swapped in on the way fails the open); None if it is not a
    regular file any more or is larger than ``limit``."""
    parts = file.relative.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(file.layer, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        leaf = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        os.close(fd)
        return None
    os.close(fd)
    with os.fdopen(leaf, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None
