"""Where a build user's things live, and who may read them.

``<sandbox>/`` (root, 0711: build users can reach their own directory but list nothing)
``  <user>/`` (root, 0711)
``    store/`` (user, 0700)  the project's own containers/storage: no layer crosses projects
``    home/``  (user, 0700)  HOME and XDG_RUNTIME_DIR (``home/run``) for buildah and runc
``    work/``  (root, 0711)
``      <build>-<attempt>/`` (root 0700 while Shipyard fills it; the user's once the build
                              starts): source, build files, secret mounts, TMPDIR
``  base-cache/`` (root, 0755) exported shared base images, read by every build user
``  disks/``      (root, 0700) one ext4 image per project, mounted on ``<user>/`` (disk cap)

Shipyard's data dir (DB, keys, tokens, registry storage) stays root-only 0700 elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shipyard.sandbox.disk import ProjectDisk
from shipyard.sandbox.users import BuildUser, SandboxError


def _dir(path: Path, mode: int, owner: BuildUser | None = None) -> Path:
    for parent in reversed(path.parents):
        if not parent.exists():
            # Explicitly searchable: Shipyard runs with umask 077, and build users must be
            # able to walk down to their own directory.
            parent.mkdir(mode=0o755)
            os.chmod(parent, 0o755)
    path.mkdir(exist_ok=True)
    os.chmod(path, mode)
    uid, gid = (owner.uid, owner.gid) if owner else (0, 0)
    st = path.stat()
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    return path


def check_reachable(path: Path) -> None:
    """Every ancestor must let others pass (x), or build users cannot reach their store."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise SandboxError(
                f"build users cannot reach {path}: {parent} is not searchable by others "
                "(chmod o+x it or set SHIPYARD_SANDBOX_DIR elsewhere)"
            )


@dataclass(frozen=True)
class UserDirs:
    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runtime_dir(self) -> Path:
        return self.home / "run"

    @property
    def runc_root(self) -> Path:
        return self.runtime_dir / "runc"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def base_stamp(self) -> Path:
        return self.root / "base-images.stamp"

    def create(self, user: BuildUser, disk: ProjectDisk | None = None) -> UserDirs:
        if disk is not None:
            disk.ensure()  # the user's directory is the project's own filesystem
        _dir(self.root, 0o711)
        _dir(self.store, 0o700, user)
        _dir(self.home, 0o700, user)
        _dir(self.runtime_dir, 0o700, user)
        # Made here, as the user's: the janitor runs runc as root with ``--root`` this dir,
        # and a root runc that finds it missing creates it root-owned, which every later
        # rootless RUN of the project then fails on ("chmod …/run/runc: operation not
        # permitted") — an abort before the project's first RUN did exactly that.
        _dir(self.runc_root, 0o700, user)
        _dir(self.work, 0o711)
        return self


@dataclass(frozen=True)
class SandboxLayout:
    root: Path

    def create(self) -> SandboxLayout:
        _dir(self.root, 0o711)
        _dir(self.base_cache, 0o755)
        _dir(self.disks, 0o700)
        check_reachable(self.root)
        return self

    @property
    def base_cache(self) -> Path:
        return self.root / "base-cache"

    def user(self, user: BuildUser) -> UserDirs:
        return UserDirs(self.root / user.name)

    @property
    def disks(self) -> Path:
        return self.root / "disks"

    def disk(self, user: BuildUser, size_bytes: int) -> ProjectDisk:
        return ProjectDisk(self.disks / f"{user.name}.img", self.root / user.name, size_bytes)


def chown_tree(path: Path, user: BuildUser) -> None:
    """Hand a filled work dir to the build user (never following a link the source holds)."""
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)
