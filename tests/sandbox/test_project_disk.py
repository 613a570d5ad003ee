"""The project disk is mounted without barriers, so an image that was not cleanly
unmounted (the host went down while it was mounted) is replaced, never mounted again."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from shipyard.sandbox.disk import ProjectDisk, cleanly_unmounted


def _superblock(path: Path, *, state: int, incompat: int, magic: int = 0xEF53) -> Path:
    block = bytearray(2048)
    block[1024 + 0x38 : 1024 + 0x3A] = magic.to_bytes(2, "little")
    block[1024 + 0x3A : 1024 + 0x3C] = state.to_bytes(2, "little")
    block[1024 + 0x60 : 1024 + 0x64] = incompat.to_bytes(4, "little")
    path.write_bytes(bytes(block))
    return path


def test_the_superblock_says_whether_it_was_cleanly_unmounted(tmp_path: Path) -> None:
    assert cleanly_unmounted(_superblock(tmp_path / "a", state=1, incompat=0x2C0))
    assert not cleanly_unmounted(_superblock(tmp_path / "b", state=0, incompat=0x2C0))
    assert not cleanly_unmounted(_superblock(tmp_path / "c", state=1, incompat=0x2C4))
    assert not cleanly_unmounted(_superblock(tmp_path / "d", state=1, incompat=0, magic=1))
    (tmp_path / "short").write_bytes(b"\0" * 100)
    assert not cleanly_unmounted(tmp_path / "short")
    assert not cleanly_unmounted(tmp_path / "missing")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mkfs.ext4") is None, reason="needs root and mkfs.ext4"
)
def test_an_image_left_mounted_by_a_crash_is_replaced(tmp_path: Path) -> None:
    image, mountpoint = tmp_path / "p.img", tmp_path / "mnt"
    disk = ProjectDisk(image, mountpoint, 256 * 1024 * 1024)
    disk.ensure()
    try:
        assert "nobarrier" in next(
            line for line in Path("/proc/mounts").read_text().splitlines()
            if f" {mountpoint} " in line
        )  # fmt: skip
        assert not cleanly_unmounted(image)  # "mounted" is in the image file already
        (mountpoint / "kept").write_text("x")
        # What the host disk holds if the host went down now.
        shutil.copyfile(image, tmp_path / "crashed.img")
        subprocess.run(["umount", str(mountpoint)], check=True)
        # Another process's mount namespace (any build running on the machine) may hold the
        # file system a little longer: it is unmounted when the last copy goes.
        deadline = time.monotonic() + 10
        while not cleanly_unmounted(image) and time.monotonic() < deadline:
            time.sleep(0.05)
        if cleanly_unmounted(image):
            disk.ensure()  # cleanly unmounted: mounted again as it is
            assert (mountpoint / "kept").read_text() == "x"
            subprocess.run(["umount", str(mountpoint)], check=True)
        (tmp_path / "crashed.img").replace(image)
        disk.ensure()  # not cleanly unmounted: a new, empty file system
        assert not (mountpoint / "kept").exists()
    finally:
        disk.unmount()
