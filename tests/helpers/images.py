"""Local base images for tests: there is no network, so nothing can be pulled.

A busybox image is built ``FROM scratch`` out of the host's static /bin/busybox; every test
Dockerfile that needs a shell starts ``FROM`` it.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from shipyard.pipeline.builder import Buildah, BuildSpec

BUSYBOX = Path("/bin/busybox")
BUSYBOX_IMAGE = "localhost/shipyard-test/busybox:latest"

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


def make_busybox_context(directory: Path) -> Path:
    """Fill ``directory`` with a static busybox and a Dockerfile that installs it; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    return directory


def build_busybox_base(
    buildah: Buildah,
    workdir: Path,
    *,
    tag: str = BUSYBOX_IMAGE,
    timeout_s: float = 120,
    timestamp: int | None = None,
) -> str:
    """Build the busybox base into ``buildah``'s store under ``tag``; returns ``tag``.
    ``timestamp``: pinned (``--timestamp``), so every store gets the same image id."""
    context = make_busybox_context(workdir.resolve() / "busybox-context")
    spec = BuildSpec(
        context_dir=context,
        dockerfile=context / "Dockerfile",
        display_dockerfile="Dockerfile",
        tag=tag,
        tmpdir=workdir.resolve() / "busybox-tmp",
        network="none",
        timestamp=timestamp,
    )
    buildah.bud(spec, on_line=lambda _line: None, cancel=threading.Event(), timeout_s=timeout_s)
    return tag
