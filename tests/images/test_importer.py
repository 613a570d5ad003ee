"""Names, sources and credentials of ``shipyard images import`` (no copy: see the live test)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from shipyard.builds.errors import InvalidRequest
from shipyard.images import importer
from shipyard.settings import Settings


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("shared/busybox:1.36", "localhost/shared/busybox:1.36"),
        ("busybox", "localhost/busybox:latest"),
        ("localhost/shared/base:v2", "localhost/shared/base:v2"),
    ],
)
def test_local_name(given: str, stored: str) -> None:
    assert importer.local_name(given) == stored


@pytest.mark.parametrize("bad", ["Shared/X", "shared/x:", "x:-y", "../x", "a//b", "x:1 y", ""])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid image name"):
        importer.local_name(bad)


def _tar(path: Path, *names: str) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


def test_sources_are_recognised(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    with pytest.raises(InvalidRequest, match="oci-layout"):
        importer.source_reference(layout)
    (layout / "oci-layout").write_text("{}")
    assert importer.source_reference(layout) == f"oci:{layout}"
    oci = _tar(tmp_path / "img.tar", "oci-layout", "index.json")
    assert importer.source_reference(oci) == f"oci-archive:{oci}"
    docker = _tar(tmp_path / "saved.tar", "manifest.json", "abc.json")
    assert importer.source_reference(docker) == f"docker-archive:{docker}"
    with pytest.raises(InvalidRequest, match="neither"):
        importer.source_reference(_tar(tmp_path / "other.tar", "README"))
    with pytest.raises(InvalidRequest, match="does not exist"):
        importer.source_reference(tmp_path / "missing")


def test_default_names() -> None:
    assert importer.default_name("docker://docker.io/library/busybox:1.36") == "busybox:1.36"
    assert importer.default_name("docker://registry.example:5000/team/base:2") == "team/base:2"
    assert importer.default_name("docker://alpine:3") == "alpine:3"
    assert importer.default_name("oci-archive:/x/My Base.tar.gz") == "my-base"
    assert importer.remote_reference("quay.io/x/y:1") == "docker://quay.io/x/y:1"
    with pytest.raises(InvalidRequest):
        importer.remote_reference("oci:/etc")


@pytest.mark.parametrize(
    ("reference", "host"),
    [("docker://quay.io/x/y:1", "quay.io"), ("docker://alpine:3", "docker.io"),
     ("docker://team/app:1", "docker.io"), ("docker://127.0.0.1:5000/shared/b:1", "127.0.0.1:5000")],
)  # fmt: skip
def test_creds_become_an_authfile_for_the_registry(
    tmp_path: Path, reference: str, host: str
) -> None:
    path = importer._creds_authfile(tmp_path, reference, "me:pa:ss")
    assert path.stat().st_mode & 0o777 == 0o600
    (entry,) = json.loads(path.read_text())["auths"].items()
    assert entry[0] == host
    with pytest.raises(InvalidRequest, match="USER:PASSWORD"):
        importer._creds_authfile(tmp_path / "x", reference, "nopassword")


def test_registry_names_stay_under_a_shared_prefix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, registry_port=5123)
    assert (
        importer.registry_name(settings, "shared/busybox") == "127.0.0.1:5123/shared/busybox:latest"
    )
    for bad in ("busybox:1", "team/busybox:1"):
        with pytest.raises(InvalidRequest, match="shared prefix"):
            importer.registry_name(settings, bad)
    external = Settings(data_dir=tmp_path, registry="registry.example.com")
    with pytest.raises(InvalidRequest, match="embedded registry"):
        importer.registry_name(external, "shared/busybox:1")
