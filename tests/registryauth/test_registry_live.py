"""A real ``docker-registry serve`` with Shipyard's token auth, against a live Shipyard API
(uvicorn on a free port): every check goes through skopeo or plain HTTP, nothing mocked."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.pipeline.net import free_port
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.registryauth import RegistryCredentials, credentials, keys, token_auth
from shipyard.registryauth.issuer import TokenIssuer
from shipyard.registryauth.scopes import Access
from shipyard.settings import Settings, prepare
from tests.registryauth.oci_image import write_oci_layout

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    settings: Settings
    registry: EmbeddedRegistry
    api_url: str
    creds: RegistryCredentials
    image: Path  # an oci: layout to push
    home: Path  # HOME / XDG dirs for skopeo: no credentials but the ones a test passes

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.registry.port}"

    @property
    def admin(self) -> tuple[str, str]:
        assert self.settings.admin_token is not None
        return "admin", self.settings.admin_token.get_secret_value()

    def skopeo(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
        }
        return subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, timeout=60, env=env
        )

    def push(self, repo: str, creds: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
        auth = ["--dest-creds", f"{creds[0]}:{creds[1]}"] if creds else ["--dest-no-creds"]
        return self.skopeo(
            "copy", "--dest-tls-verify=false", *auth,
            f"oci:{self.image}:latest", f"docker://{self.host}/{repo}",
        )  # fmt: skip

    def inspect(self, repo: str, creds: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
        auth = ["--creds", f"{creds[0]}:{creds[1]}"] if creds else ["--no-creds"]
        return self.skopeo("inspect", "--tls-verify=false", *auth, f"docker://{self.host}/{repo}")

    def bearer(self, creds: tuple[str, str], *scopes: str) -> str:
        response = httpx.get(
            f"{self.api_url}/v1/registry/token",
            params={"service": self.settings.registry_token_service, "scope": list(scopes)},
            auth=creds,
            timeout=10,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("skopeo") is None or shutil.which("docker-registry") is None:
        pytest.skip("needs skopeo and docker-registry")
    root = tmp_path_factory.mktemp("registry-auth")
    settings = prepare(Settings(data_dir=root / "data", port=free_port(), executor="none"))
    app = create_app(settings, lambda *_: NullExecutor())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    registry = EmbeddedRegistry(settings.data_dir, auth=token_auth(settings))
    home = root / "home"
    (home / "run").mkdir(parents=True)
    try:
        with registry:
            yield Stack(
                settings=settings,
                registry=registry,
                api_url=f"http://127.0.0.1:{settings.port}",
                creds=credentials(settings),
                image=write_oci_layout(root / "image", b"proof\n"),
                home=home,
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> Stack:
    """``shared/base:1`` (pushed by the operator with the admin token) and ``b/web:1`` (by a
    build of project b)."""
    assert stack.push("shared/base:1", stack.admin).returncode == 0
    build_b = stack.creds.issue_build_credential("b", "b-build-1", 300)
    done = stack.push("b/web:1", build_b)
    assert done.returncode == 0, done.stderr
    return stack


def test_registry_config_has_token_auth_and_deletes_for_gc(stack: Stack) -> None:
    config = json.loads(stack.registry.config_path.read_text())
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["storage"]["maintenance"] == {"readonly": {"enabled": False}}
    token = config["auth"]["token"]
    assert token["realm"] == f"{stack.api_url}/v1/registry/token"
    assert token["rootcertbundle"] == str(keys.load_or_create(stack.settings.data_dir).cert_path)
    assert (token["service"], token["issuer"]) == ("shipyard-registry", "shipyard")


def test_anonymous_gets_nothing(seeded: Stack) -> None:
    for path in ("/v2/", "/v2/_catalog", "/v2/shared/base/manifests/1", "/v2/b/web/tags/list"):
        response = httpx.get(f"{seeded.registry.url}{path}", timeout=5, trust_env=False)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer realm=")
    # skopeo asks the token endpoint without credentials and is turned away there.
    for result in (
        seeded.inspect("shared/base:1", None),
        seeded.push("anon/web:1", None),
        seeded.push("shared/base:1", None),
    ):
        assert result.returncode != 0 and "unauthorized" in result.stderr


def test_build_credential_of_a_stays_in_its_lane(seeded: Stack) -> None:
    build_a = seeded.creds.issue_build_credential("a", "a-build-1", 300)
    pushed = seeded.push("a/web:1", build_a)
    assert pushed.returncode == 0, pushed.stderr
    assert seeded.inspect("a/web:1", build_a).returncode == 0
    assert seeded.inspect("shared/base:1", build_a).returncode == 0
    # Another project's repository: neither write nor read; shared: read only.
    refused_push = seeded.push("b/web:1", build_a)
    assert refused_push.returncode != 0 and "denied" in refused_push.stderr
    refused_pull = seeded.inspect("b/web:1", build_a)
    assert refused_pull.returncode != 0 and "denied" in refused_pull.stderr.lower()
    for result in (seeded.push("shared/base:2", build_a), seeded.push("b/other:1", build_a)):
        assert result.returncode != 0 and "denied" in result.stderr
    # b's image is untouched: b's own pull sees the digest it pushed.
    build_b = seeded.creds.issue_build_credential("b", "b-build-2", 300)
    assert seeded.inspect("b/web:1", build_b).returncode == 0


def test_the_authfile_the_pipeline_writes_works(seeded: Stack, tmp_path: Path) -> None:
    user, password = seeded.creds.issue_build_credential("a", "a-build-2", 300)
    authfile = tmp_path / "auth.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {seeded.host: {"auth": auth}}}))
    done = seeded.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-authfile", str(authfile),
        f"oci:{seeded.image}:latest", f"docker://{seeded.host}/a/authfile:1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    inspect = seeded.skopeo(
        "inspect", "--tls-verify=false", "--authfile", str(authfile),
        f"docker://{seeded.host}/shared/base:1",
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr


def test_pull_credential_from_the_api_with_skopeo_login(seeded: Stack, tmp_path: Path) -> None:
    assert seeded.settings.admin_token is not None
    with httpx.Client(
        base_url=seeded.api_url,
        headers={"Authorization": f"Bearer {seeded.settings.admin_token.get_secret_value()}"},
        trust_env=False,
    ) as api:
        assert api.post("/v1/projects", json={"name": "b"}).status_code == 200
        data = api.get("/v1/projects/b/registry-credentials").json()["data"]
    creds = (data["username"], data["password"])
    assert seeded.inspect("b/web:1", creds).returncode == 0
    assert seeded.inspect("shared/base:1", creds).returncode == 0
    for result in (seeded.push("b/web:2", creds), seeded.inspect("a/web:1", creds)):
        assert result.returncode != 0 and "denied" in result.stderr  # pull-only, own project
    # README: log in once, then pull without --creds.
    authfile = tmp_path / "login.json"
    login = subprocess.run(
        ["skopeo", "login", "--tls-verify=false", "--authfile", str(authfile),
         "-u", data["username"], "--password-stdin", seeded.host],
        input=data["password"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    pulled = seeded.skopeo(
        "inspect", "--tls-verify=false", "--authfile", str(authfile),
        f"docker://{seeded.host}/b/web:1",
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr


def _manifest_digest(stack: Stack, repo: str, tag: str) -> str:
    token = stack.bearer(stack.admin, f"repository:{repo}:pull")
    response = httpx.head(
        f"{stack.registry.url}/v2/{repo}/manifests/{tag}",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.oci.image.manifest.v1+json",
        },
        timeout=5,
        trust_env=False,
    )
    assert response.status_code == 200
    return response.headers["docker-content-digest"]


def test_manifest_delete_only_for_shipyard_itself(seeded: Stack) -> None:
    """Deletes are on for garbage collection, and only Shipyard's internal identity gets a
    token that allows one: a build credential, a pull credential and even the admin token
    are refused by the registry."""
    build_b = seeded.creds.issue_build_credential("b", "b-build-del", 300)
    assert seeded.push("b/gone:1", build_b).returncode == 0
    digest = _manifest_digest(seeded, "b/gone", "1")
    url = f"{seeded.registry.url}/v2/b/gone/manifests/{digest}"
    pull_b = seeded.creds.issue_pull_credential("b", 300)[:2]
    for creds in (build_b, pull_b, seeded.admin):
        token = seeded.bearer(creds, "repository:b/gone:pull,push,delete,*")
        denied = httpx.delete(url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        assert denied.status_code == 401, creds[0]
    assert _manifest_digest(seeded, "b/gone", "1") == digest
    internal = seeded.bearer(seeded.creds.internal_credential(), "repository:b/gone:delete")
    deleted = httpx.delete(url, headers={"Authorization": f"Bearer {internal}"}, trust_env=False)
    assert deleted.status_code == 202
    # The tag went with the manifest (distribution untags a deleted digest).
    assert seeded.inspect("b/gone:1", build_b).returncode != 0


def test_maintenance_is_read_only_and_garbage_collect_frees_blobs(seeded: Stack) -> None:
    from shipyard.gc.disk import usage
    from shipyard.gc.registry import RegistryAdmin

    build_b = seeded.creds.issue_build_credential("b", "b-build-gc", 300)
    big = write_oci_layout(seeded.home.parent / "big", os.urandom(2 << 20))
    pushed = seeded.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", ":".join(build_b),
        f"oci:{big}:latest", f"docker://{seeded.host}/b/big:1",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    admin = RegistryAdmin(seeded.registry.target_with(*seeded.creds.internal_credential()))
    try:
        assert admin.tags("b/big") == ["1"]
        digest = admin.resolve("b/big", "1")
        assert digest is not None and admin.delete("b/big", digest)
    finally:
        admin.close()
    before = usage(seeded.registry.storage_dir)
    with seeded.registry.maintenance():
        # Reads go on, writes are refused while the collector runs.
        assert seeded.inspect("b/web:1", build_b).returncode == 0
        assert seeded.push("b/ro:1", build_b).returncode != 0
        seeded.registry.collect_garbage()
    assert before - usage(seeded.registry.storage_dir) > (2 << 20) * 0.9
    assert seeded.push("b/after:1", build_b).returncode == 0
    assert seeded.inspect("b/web:1", build_b).returncode == 0


def test_expired_credential_is_refused(seeded: Stack) -> None:
    expiring = seeded.creds.issue_build_credential("a", "a-build-3", 1)
    time.sleep(2.1)
    refused = seeded.inspect("shared/base:1", expiring)
    assert refused.returncode != 0 and "invalid username/password" in refused.stderr
    response = httpx.get(
        f"{seeded.api_url}/v1/registry/token", auth=expiring, timeout=5, trust_env=False
    )
    assert response.status_code == 401


def test_tokens_signed_by_another_key_are_refused(seeded: Stack, tmp_path: Path) -> None:
    rogue = TokenIssuer(
        keys.load_or_create(tmp_path / "rogue"), issuer="shipyard", service="shipyard-registry"
    )
    forged = rogue.issue("evil", [Access("repository", "b/web", ("pull", "push"))]).token
    response = httpx.get(
        f"{seeded.registry.url}/v2/b/web/tags/list",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=5,
        trust_env=False,
    )
    assert response.status_code == 401
    genuine = seeded.bearer(seeded.admin, "repository:b/web:pull")
    ok = httpx.get(
        f"{seeded.registry.url}/v2/b/web/tags/list",
        headers={"Authorization": f"Bearer {genuine}"},
        timeout=5,
        trust_env=False,
    )
    assert ok.status_code == 200 and ok.json()["tags"] == ["1"]


def test_catalog_only_for_shipyard_itself(seeded: Stack) -> None:
    url = f"{seeded.registry.url}/v2/_catalog"
    admin = seeded.bearer(seeded.admin, "registry:catalog:*")
    denied = httpx.get(url, headers={"Authorization": f"Bearer {admin}"}, trust_env=False)
    assert denied.status_code == 401
    internal = seeded.bearer(seeded.creds.internal_credential(), "registry:catalog:*")
    listed = httpx.get(url, headers={"Authorization": f"Bearer {internal}"}, trust_env=False)
    assert listed.status_code == 200 and "b/web" in listed.json()["repositories"]


def test_cli_prints_pull_credentials_that_work(seeded: Stack) -> None:
    from typer.testing import CliRunner

    from shipyard.cli.main import app

    _, admin = seeded.admin
    with httpx.Client(base_url=seeded.api_url, trust_env=False) as api:
        api.post("/v1/projects", json={"name": "c"}, headers={"Authorization": f"Bearer {admin}"})
    runner = CliRunner()
    args = ["registry", "credentials", "-p", "c", "--url", seeded.api_url, "--token", admin]
    as_json = runner.invoke(app, [*args, "--output", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert set(data) == {"registry", "username", "password", "expiresAt"}
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    lines = dict(line.split(": ", 1) for line in text.stdout.splitlines())
    assert lines["registry"] == data["registry"] and lines["username"] == "pull"
    pushed = seeded.push("c/web:1", seeded.admin)
    assert pushed.returncode == 0, pushed.stderr
    assert seeded.inspect("c/web:1", (lines["username"], lines["password"])).returncode == 0
    refused = runner.invoke(app, ["registry", "credentials", "-p", "c", "--url", seeded.api_url,
                                  "--token", "sy_nope"])  # fmt: skip
    assert refused.exit_code == 1


def test_pipeline_push_and_reuse_check_with_credentials(seeded: Stack, tmp_path: Path) -> None:
    """The pipeline's own code paths (buildah push and skopeo inspect through an authfile) with
    the targets the runtime builds: a build's credential, Shipyard's internal one."""
    if shutil.which("buildah") is None:
        pytest.skip("needs buildah")
    from shipyard.pipeline.builder import Buildah, BuildahStore, remote_image_exists, unmount_under

    store = BuildahStore(root=tmp_path / "root", runroot=tmp_path / "runroot")
    buildah = Buildah(store, retry_delay_s=0.05)
    try:
        subprocess.run(
            ["buildah", *store.args(), "pull", "-q", f"oci:{seeded.image}:latest"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        images = subprocess.run(
            ["buildah", *store.args(), "images", "-q"], capture_output=True, text=True, check=True
        )
        image = images.stdout.split()[0]
        build_a = seeded.registry.target_with(*seeded.creds.issue_build_credential("a", "x", 300))
        digest = buildah.push(
            image, f"{build_a.repository('a', 'pipeline')}:1", target=build_a,
            tmpdir=tmp_path / "push", on_line=lambda _l: None, cancel=threading.Event(),
            timeout_s=60,
        )  # fmt: skip
        reference = f"{build_a.repository('a', 'pipeline')}@{digest}"
        internal = seeded.registry.target_with(*seeded.creds.internal_credential())
        build_b = seeded.registry.target_with(*seeded.creds.issue_build_credential("b", "y", 300))

        def exists(target: RegistryTarget) -> bool:
            return remote_image_exists(
                reference, target=target, tmpdir=tmp_path, cancel=threading.Event()
            )

        assert exists(internal) and exists(build_a)
        assert not exists(build_b) and not exists(seeded.registry.target)
    finally:
        unmount_under(store.root)


def test_gc_removes_artifacts_attached_by_the_referrers_tag_schema(seeded: Stack) -> None:
    """An SBOM attached to an image (OCI referrers tag schema: an index tagged
    ``sha256-<hex>``) goes with its image; it would otherwise stay tagged forever."""
    import hashlib

    from shipyard.gc.registry import RegistryAdmin

    build_b = seeded.creds.issue_build_credential("b", "b-build-ref", 300)
    assert seeded.push("b/refd:1", build_b).returncode == 0
    subject = _manifest_digest(seeded, "b/refd", "1")
    token = seeded.bearer(seeded.creds.internal_credential(), "repository:b/refd:pull,push")
    auth = {"Authorization": f"Bearer {token}"}
    base = f"{seeded.registry.url}/v2/b/refd"
    empty = b"{}"
    empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
    started = httpx.post(f"{base}/blobs/uploads/", headers=auth, trust_env=False)
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    location = location if location.startswith("http") else seeded.registry.url + location
    sep = "&" if "?" in location else "?"
    put = httpx.put(f"{location}{sep}digest={empty_digest}", content=empty, headers=auth,
                    trust_env=False)  # fmt: skip
    assert put.status_code == 201, put.text
    oci = "application/vnd.oci.image.manifest.v1+json"
    descriptor = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": empty_digest,
        "size": 2,
    }
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": oci, "artifactType": "application/spdx+json",
        "config": descriptor, "layers": [descriptor],
        "subject": {"mediaType": oci, "digest": subject, "size": 1},
    }).encode()  # fmt: skip
    artifact_digest = "sha256:" + hashlib.sha256(artifact).hexdigest()
    put = httpx.put(f"{base}/manifests/{artifact_digest}", content=artifact,
                    headers={**auth, "Content-Type": oci}, trust_env=False)  # fmt: skip
    assert put.status_code == 201, put.text
    index_type = "application/vnd.oci.image.index.v1+json"
    index = json.dumps({
        "schemaVersion": 2, "mediaType": index_type,
        "manifests": [{"mediaType": oci, "digest": artifact_digest, "size": len(artifact),
                       "artifactType": "application/spdx+json"}],
    }).encode()  # fmt: skip
    put = httpx.put(f"{base}/manifests/{subject.replace(':', '-')}", content=index,
                    headers={**auth, "Content-Type": index_type}, trust_env=False)  # fmt: skip
    assert put.status_code == 201, put.text

    admin = RegistryAdmin(seeded.registry.target_with(*seeded.creds.internal_credential()))
    try:
        assert admin.resolve("b/refd", artifact_digest) == artifact_digest
        assert admin.delete_referrers("b/refd", subject) == 1
        assert admin.delete("b/refd", subject)
        assert admin.resolve("b/refd", artifact_digest) is None
        assert admin.tags("b/refd") == []
    finally:
        admin.close()
