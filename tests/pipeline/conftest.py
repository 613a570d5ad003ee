"""Real buildah + real registry fixtures; all state lives under the test's tmp_path."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.pipeline.builder import Buildah, BuildahStore, unmount_under
from shipyard.pipeline.registry import EmbeddedRegistry

# pytest's default import mode does not put the repo root on sys.path, and tests/ has no
# __init__.py; the shared helpers are imported as ``tests.helpers``.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.helpers.images import build_busybox_base  # noqa: E402

TOOLS = ("buildah", "skopeo", "runc", "docker-registry")


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    _require_tools()
    with EmbeddedRegistry(tmp_path / "registry-data") as reg:
        yield reg


@pytest.fixture
def buildah_store(tmp_path: Path) -> Iterator[BuildahStore]:
    _require_tools()
    store = BuildahStore(root=tmp_path / "storage" / "root", runroot=tmp_path / "storage" / "run")
    yield store
    # buildah bind-mounts <root>/overlay onto itself and leaves it; without this the tmp
    # dir could not be removed.
    unmount_under(store.root)


@pytest.fixture
def buildah(buildah_store: BuildahStore) -> Buildah:
    # Short retry delay: buildah 1.28 retries registry errors 3 times whatever --retry says.
    return Buildah(buildah_store, retry_delay_s=0.05)


@pytest.fixture
def busybox_base(buildah: Buildah, tmp_path: Path) -> str:
    return build_busybox_base(buildah, tmp_path / "base")
