"""A disk cap per project, enforced by the kernel: the build user's whole directory (its
layer store, HOME and every build's work dir) is an ext4 filesystem of its own, in a sparse
image file mounted through a loop device. A build that fills it gets ENOSPC from the kernel
(buildah, git and RUN steps alike); other projects and Shipyard's own disk are unaffected.

Sparse: the image takes only what is written (creating one costs ~40 ms). cgroup v1 has no
disk-write controller that covers buffered writes, and the host filesystem has no project
quotas, so this is what enforces "disk written" on these machines.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shipyard.sandbox.users import SandboxError

_TIMEOUT_S = 60.0


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
        _run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)])

    def unmount(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True,
                           timeout=_TIMEOUT_S, check=False)  # fmt: skip
