"""A disk cap per project, enforced by the kernel: the build user's whole directory (its
layer store, HOME and every build's work dir) is an ext4 filesystem of its own, in a sparse
image file mounted through a loop device. A build that fills it gets ENOSPC from the kernel
(buildah, git and RUN steps alike); other projects and Shipyard's own disk are unaffected.

Sparse: the image takes only what is written (creating one costs ~40 ms). cgroup v1 has no
disk-write controller that covers buffered writes, and the host filesystem has no project
quotas, so this is what enforces "disk written" on these machines.

Mounted ``nobarrier``: containers/storage fdatasyncs its JSON indexes several times per
build step (~370 times in a rebuild of the benchmark's sample), and through a loop device
each one also flushed the image file on the host disk (~1 ms each here; 0.05 ms without).
What the disk holds is a cache (layers, base-image copies) and each build's scratch, so
durability across a host crash is not needed, but consistency is: an image whose file
system was not cleanly unmounted (the host crashed while it was mounted: without barriers
the journal cannot be trusted) is never mounted again — it is replaced by an empty one, and
the project's next build is a cold one. The image file is flushed once after each mount, so
that "mounted" is on the host disk before any build writes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shipyard.sandbox.users import SandboxError

_TIMEOUT_S = 60.0
MOUNT_OPTIONS = "loop,nobarrier"

# ext4's superblock (1024 bytes in): magic, state (EXT4_VALID_FS: cleanly unmounted) and
# the incompatible features (RECOVER: the journal needs replaying).
_SUPERBLOCK = 1024
_MAGIC_AT, _MAGIC = 0x38, 0xEF53
_STATE_AT, _VALID_FS = 0x3A, 0x0001
_INCOMPAT_AT, _INCOMPAT_RECOVER = 0x60, 0x0004


def cleanly_unmounted(image: Path) -> bool:
    """Whether the ext4 file system in ``image`` was cleanly unmounted (False when it is
    mounted now, was when the host went down, or is not ext4)."""
    try:
        with image.open("rb") as handle:
            handle.seek(_SUPERBLOCK)
            block = handle.read(0x64)
    except OSError:
        return False
    if len(block) < 0x64:
        return False
    magic = int.from_bytes(block[_MAGIC_AT : _MAGIC_AT + 2], "little")
    state = int.from_bytes(block[_STATE_AT : _STATE_AT + 2], "little")
    incompat = int.from_bytes(block[_INCOMPAT_AT : _INCOMPAT_AT + 4], "little")
    return magic == _MAGIC and bool(state & _VALID_FS) and not incompat & _INCOMPAT_RECOVER


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()}")


class ProjectDisk:
    def __init__(self, image: Path, mountpoint: Path, size_bytes: int) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.size_bytes = size_bytes

    def ensure(self) -> None:
        """Create (first use) and mount (after a reboot) the project's filesystem."""
        if os.path.ismount(self.mountpoint):
            return
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if self.image.exists() and not cleanly_unmounted(self.image):
            # Mounted without barriers when the host went down: contents not trustworthy,
            # and only a cache. Start afresh (the loop device of a lazily unmounted one
            # keeps its own reference to the old file).
            self.image.unlink()
        if not self.image.exists():
            partial = self.image.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            with partial.open("wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.truncate(self.size_bytes)
            # -m 0: no blocks reserved for root (the build user is the only writer).
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                  "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(partial)])  # fmt: skip
            partial.rename(self.image)
        # Not nosuid/nodev: those flags get locked in the build's user namespace and runc's
        # read-only remount of a secret bind mount then fails with EPERM. Nothing is lost:
        # a build cannot make a file owned by host root (uid 0 is not mapped) nor a device.
        _run(["mount", "-o", MOUNT_OPTIONS, str(self.image), str(self.mountpoint)])
        # The superblock now says "mounted" (needs recovery): make that durable first.
        fd = os.open(self.image, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unmount(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True,
                           timeout=_TIMEOUT_S, check=False)  # fmt: skip
