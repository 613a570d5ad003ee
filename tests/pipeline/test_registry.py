"""The registry target and the embedded ``docker-registry``."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest

from shipyard.pipeline.builder import Buildah
from shipyard.pipeline.net import free_port
from shipyard.pipeline.registry import (
    EmbeddedRegistry,
    RegistryStartError,
    RegistryTarget,
    TokenAuth,
)

slow = pytest.mark.slow


def test_parse_host_port_and_prefix() -> None:
    target = RegistryTarget.parse("registry.example.com:5000/team/ci/", insecure=False)
    assert target == RegistryTarget(
        host="registry.example.com:5000", prefix="team/ci", insecure=False
    )
    assert target.repository("proj-1", "api") == "registry.example.com:5000/team/ci/proj-1/api"
    assert RegistryTarget.parse("127.0.0.1:5000").repository("p", "s") == "127.0.0.1:5000/p/s"


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:5000", "", "host:port", "host:5000/Upper", "-host:5000"]
)
def test_parse_rejects_bad_values(value: str) -> None:
    with pytest.raises(ValueError):
        RegistryTarget.parse(value)


def test_repository_rejects_unsafe_components() -> None:
    target = RegistryTarget(host="127.0.0.1:5000")
    for project, name in [("p", "../x"), ("p", "A"), ("", "s"), ("p", "s:tag")]:
        with pytest.raises(ValueError):
            target.repository(project, name)


def test_password_stays_out_of_repr() -> None:
    target = RegistryTarget.parse("r.example.com", username="u", password="hunter2-pass")
    assert "hunter2" not in repr(target)
    with pytest.raises(ValueError):
        RegistryTarget(host="r.example.com", username="u")


@slow
def test_embedded_registry_serves_v2_on_loopback(registry: EmbeddedRegistry) -> None:
    response = httpx.get(f"{registry.url}/v2/", timeout=5, trust_env=False)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.target == RegistryTarget(host=f"127.0.0.1:{registry.port}", insecure=True)
    assert registry.storage_dir == registry.data_dir / "registry"


@slow
def test_stop_frees_the_port_and_is_idempotent(tmp_path: Path) -> None:
    reg = EmbeddedRegistry(tmp_path / "data")
    reg.start()
    port = reg.port
    reg.stop()
    reg.stop()
    assert not reg.running
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


@slow
def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RegistryStartError, match=f"127.0.0.1:{port} is in use"):
            EmbeddedRegistry(tmp_path / "data", port).start()


@slow
def test_registry_dying_at_start_reports_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "fake-registry"
    fake.write_text("#!/bin/sh\necho 'configuration error: nope' >&2\nexit 1\n")
    fake.chmod(0o755)
    reg = EmbeddedRegistry(tmp_path / "data", free_port(), binary=str(fake))
    with pytest.raises(
        RegistryStartError, match=r"(?s)exited with code 1.*configuration error: nope"
    ):
        reg.start()
    assert not reg.running


@slow
def test_manifests_cannot_be_deleted(
    registry: EmbeddedRegistry, buildah: Buildah, busybox_base: str, tmp_path: Path
) -> None:
    # Without token auth deletes are off: any local process could remove any image.
    repo = registry.target.repository("proj", "kept")
    digest = buildah.push(
        busybox_base,
        f"{repo}:v1",
        target=registry.target,
        tmpdir=tmp_path / "push",
        on_line=lambda _line: None,
        cancel=threading.Event(),
        timeout_s=60,
    )
    manifest = f"{registry.url}/v2/proj/kept/manifests/{digest}"
    refused = httpx.delete(manifest, timeout=5, trust_env=False)
    assert refused.status_code == 405 and "UNSUPPORTED" in refused.text
    oci = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert httpx.head(manifest, headers=oci, timeout=5, trust_env=False).status_code == 200


@slow
def test_token_auth_config_and_readiness(tmp_path: Path) -> None:
    from shipyard.registryauth import keys

    cert = keys.load_or_create(tmp_path / "keys").cert_path
    auth = TokenAuth(
        realm="http://127.0.0.1:1/v1/registry/token", service="svc", issuer="iss",
        rootcertbundle=cert,
    )  # fmt: skip
    with EmbeddedRegistry(tmp_path / "data", auth=auth) as reg:  # ready although /v2/ is 401
        response = httpx.get(f"{reg.url}/v2/", timeout=5, trust_env=False)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            'Bearer realm="http://127.0.0.1:1/v1/registry/token",service="svc"'
        )
        target = reg.target_with("build", "pw")
        assert (target.host, target.username, target.password) == (reg.target.host, "build", "pw")
