"""Supply chain end to end, with real builds on live servers: OCI labels from the commit,
the same digest from two cold builds of one commit on fresh data dirs, and (later in this
file) the SBOM and the provenance attached to the image."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.pipeline.builder import Buildah, BuildahStore, unmount_under
from tests.helpers.images import BUSYBOX_IMAGE, build_busybox_base
from tests.helpers.live import LiveServer, remove_sandbox, start_server, stop_server

pytestmark = pytest.mark.slow

SECRET = "value-never-in-provenance-0451"
COMMIT_TIME = 1_700_000_000  # 2023-11-14T22:13:20Z

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
COPY rootfs/ /
RUN echo built > /built && mkdir -p /data
"""

DPKG_STATUS = """\
Package: libfake1
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1.2.3-4
Description: a fake library

Package: removed-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1

Package: fake-utils
Status: install ok installed
Architecture: all
Version: 2:9.8-1
Description: fake utilities
"""

APK_INSTALLED = """\
C:Q1abc=
P:musl-fake
V:1.2.4-r2
A:x86_64
T:the musl c library (fake)

C:Q1def=
P:busybox-fake
V:1.36.1-r5
A:x86_64
"""

METADATA = """\
Metadata-Version: 2.1
Name: requests-fake
Version: 2.31.0
Summary: a fake distribution
"""


def _git(cwd: Path, *args: str, when: int = COMMIT_TIME) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
           "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def write_app(root: Path) -> Path:
    """A build context with a fake dpkg and apk database, a Python distribution and npm
    packages: what the SBOM must find in the built image."""
    files = {
        "Dockerfile": DOCKERFILE,
        "rootfs/var/lib/dpkg/status": DPKG_STATUS,
        "rootfs/lib/apk/db/installed": APK_INSTALLED,
        "rootfs/usr/lib/python3.11/site-packages/requests_fake-2.31.0.dist-info/METADATA": METADATA,
        "rootfs/app/node_modules/left-pad/package.json": json.dumps(
            {"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}
        ),
        "rootfs/app/node_modules/@scope/tool/package.json": json.dumps(
            {"name": "@scope/tool", "version": "0.4.1"}
        ),
        "rootfs/app/package.json": json.dumps({"name": "the-app", "private": True}),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    repo = write_app(tmp_path_factory.mktemp("supply-repo"))
    _git(repo, "init", "-q", "--initial-branch=main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "supply chain sample")
    return repo, _git(repo, "rev-parse", "HEAD")


@contextlib.contextmanager
def fresh_server(root: Path) -> Iterator[LiveServer]:
    """A server on a new data dir whose base store holds the busybox base built with a pinned
    timestamp (the same image id in every store)."""
    data_dir = root / "data"
    store = BuildahStore(
        root=data_dir / "base-images" / "root", runroot=data_dir / "base-images" / "runroot"
    )
    build_busybox_base(Buildah(store), root / "seed", timestamp=0)
    proc, server = start_server(data_dir)
    try:
        yield server
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data_dir)


def create_service(live: LiveServer, repo: Path, name: str, **extra: Any) -> str:
    with live.client() as c:
        r = c.post("/v1/projects", json={"name": name})
        assert r.status_code == 200, r.text
        project = r.json()["data"]["id"]
        body = {
            "name": name,
            "vcsData": {"projectUrl": f"file://{repo}", "projectType": "self-hosted",
                        "projectBranch": "main"},
            **extra,
        }  # fmt: skip
        r = c.post(f"/v1/projects/{project}/services/combined", json=body)
        assert r.status_code == 200, r.text
        return f"/v1/projects/{project}/services/{r.json()['data']['id']}"


def build(live: LiveServer, svc: str) -> dict[str, Any]:
    with live.client() as c:
        # A build argument no ARG declares: its name goes in the provenance, never its value.
        r = c.post(f"{svc}/build", json={"overrides": {"buildArguments": {"GREETING": SECRET}}})
        assert r.status_code == 200, r.text
        build_id = r.json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}", timeout=300)
    assert done["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-20:]
    return done


def skopeo_json(live: LiveServer, *args: str) -> Any:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(live.authfile), *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


@dataclass
class Built:
    live: LiveServer
    svc: str
    build: dict[str, Any]


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, repo: tuple[Path, str]) -> Iterator[Built]:
    with fresh_server(tmp_path_factory.mktemp("supply-a")) as live:
        svc = create_service(live, repo[0], "supply")
        yield Built(live, svc, build(live, svc))


def test_image_has_oci_labels_from_the_commit(first: Built, repo: tuple[Path, str]) -> None:
    config = skopeo_json(first.live, "--config", f"docker://{first.build['registry']['uri']}")
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.source"] == f"file://{repo[0]}"
    assert labels["org.opencontainers.image.revision"] == repo[1]
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    # buildah's --timestamp: the image's own created time is the commit's.
    assert config["created"].startswith("2023-11-14T22:13:20")


def test_two_cold_builds_of_one_commit_on_fresh_data_dirs_give_one_digest(
    first: Built, repo: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with fresh_server(tmp_path_factory.mktemp("supply-b")) as live:
        svc = create_service(live, repo[0], "supply")
        second = build(live, svc)
    digest = first.build["registry"]["uri"].split("@", 1)[1]
    assert second["registry"]["uri"].split("@", 1)[1] == digest


def registry_get(live: LiveServer, name: str, path: str, accept: str = "") -> httpx.Response:
    """A plain HTTP read of the registry with the admin token (distribution's token auth)."""
    url = f"http://{live.registry}/v2/{name}/{path}"
    headers = {"Accept": accept} if accept else {}
    first = httpx.get(url, headers=headers, trust_env=False)
    if first.status_code != 401:
        return first
    challenge = dict(re.findall(r'(\w+)="([^"]*)"', first.headers["www-authenticate"]))
    realm = challenge.pop("realm")
    token = httpx.get(realm, params={**challenge, "scope": f"repository:{name}:pull"},
                      auth=("admin", live.token), trust_env=False).json()["token"]  # fmt: skip
    return httpx.get(url, headers={**headers, "Authorization": f"Bearer {token}"},
                     trust_env=False)  # fmt: skip


EXPECTED = {
    ("deb", "libfake1", "1.2.3-4"),
    ("deb", "fake-utils", "2:9.8-1"),
    ("apk", "musl-fake", "1.2.4-r2"),
    ("apk", "busybox-fake", "1.36.1-r5"),
    ("pypi", "requests-fake", "2.31.0"),
    ("npm", "left-pad", "1.3.0"),
    ("npm", "@scope/tool", "0.4.1"),
}


def _packages(sbom: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["purl"].split(":", 1)[1].split("/", 1)[0], c["name"], c["version"])
            for c in sbom["components"]}  # fmt: skip


def test_sbom_and_provenance_from_the_api(first: Built, repo: tuple[Path, str]) -> None:
    build_id = first.build["id"]
    digest = first.build["registry"]["uri"].split("@", 1)[1]
    with first.live.client() as c:
        r = c.get(f"{first.svc}/build/{build_id}/sbom")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/vnd.cyclonedx+json")
        sbom = r.json()
        r = c.get(f"{first.svc}/build/{build_id}/provenance")
        assert r.status_code == 200, r.text
        provenance = r.json()
        missing = c.get(f"{first.svc}/build/nope-nope-0000/sbom")
        assert missing.status_code == 404
    # The right packages, and none that dpkg marks removed nor the app's own package.json.
    assert _packages(sbom) == EXPECTED
    assert provenance["_type"] == "https://in-toto.io/Statement/v1"
    assert provenance["predicateType"] == "https://slsa.dev/provenance/v1"
    assert provenance["subject"][0]["digest"] == {"sha256": digest.split(":", 1)[1]}
    definition = provenance["predicate"]["buildDefinition"]
    source = definition["resolvedDependencies"][0]
    assert source == {"uri": f"git+file://{repo[0]}", "digest": {"gitCommit": repo[1]},
                      "annotations": {"branch": "main"}}  # fmt: skip
    assert definition["externalParameters"]["buildArgs"] == ["GREETING"]
    assert SECRET not in json.dumps(provenance)
    bases = {d["uri"]: d for d in definition["resolvedDependencies"][1:]}
    assert bases[f"docker://{BUSYBOX_IMAGE}"]["digest"]["sha256"]
    assert provenance["predicate"]["runDetails"]["metadata"]["invocationId"] == build_id
    logs = first.live.logs(f"{first.svc}/build-logs", build_id)
    assert any("SBOM: 7 package(s)" in line for line in logs), logs[-10:]


def test_sbom_and_provenance_are_referrers_in_the_registry(first: Built) -> None:
    repository, digest = first.build["registry"]["uri"].split("@", 1)
    name = repository.split("/", 1)[1]
    # distribution 2.8 has no referrers API: the tag schema's index lists both artifacts.
    index = registry_get(first.live, name, f"manifests/{digest.replace(':', '-')}",
                         "application/vnd.oci.image.index.v1+json")  # fmt: skip
    assert index.status_code == 200, index.text
    children = index.json()["manifests"]
    assert {c["artifactType"] for c in children} == {
        "application/vnd.cyclonedx+json", "application/vnd.in-toto+json"
    }  # fmt: skip
    for child in children:
        manifest = registry_get(first.live, name, f"manifests/{child['digest']}",
                                "application/vnd.oci.image.manifest.v1+json").json()  # fmt: skip
        assert manifest["subject"]["digest"] == digest
        blob = registry_get(first.live, name, f"blobs/{manifest['layers'][0]['digest']}")
        document = blob.json()
        if child["artifactType"] == "application/vnd.cyclonedx+json":
            assert _packages(document) == EXPECTED
        else:
            assert document["subject"][0]["digest"]["sha256"] == digest.split(":", 1)[1]
    # skopeo sees the index too (a client that knows the tag schema finds it).
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile",
         str(first.live.authfile), f"docker://{repository}:{digest.replace(':', '-')}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert len(json.loads(raw.stdout)["manifests"]) == 2


def test_a_reused_build_serves_the_documents_of_its_image(first: Built) -> None:
    again = build(first.live, first.svc)
    assert again["registry"]["uri"] == first.build["registry"]["uri"]
    with first.live.client() as c:
        for kind in ("sbom", "provenance"):
            one = c.get(f"{first.svc}/build/{first.build['id']}/{kind}")
            two = c.get(f"{first.svc}/build/{again['id']}/{kind}")
            assert two.status_code == 200 and two.content == one.content


def test_gc_deletes_the_artifacts_with_their_image(first: Built, tmp_path: Path) -> None:
    repo = write_app(tmp_path / "gc-repo")
    _git(repo, "init", "-q", "--initial-branch=main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    svc = create_service(first.live, repo, "supply-gc", retention={"keepLast": 1, "keepDays": 0})
    old = build(first.live, svc)
    (repo / "rootfs" / "second").write_text("2\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "two", when=COMMIT_TIME + 60)
    new = build(first.live, svc)
    repository, old_digest = old["registry"]["uri"].split("@", 1)
    name = repository.split("/", 1)[1]
    index = f"manifests/{old_digest.replace(':', '-')}"
    assert (
        registry_get(first.live, name, index, "application/vnd.oci.image.index.v1+json").status_code
        == 200
    )
    with first.live.client() as c:
        r = c.post("/v1/gc", timeout=300)
        assert r.status_code == 200, r.text
        assert old["id"] in json.dumps(r.json())
        gone = c.get(f"{svc}/build/{old['id']}/sbom")
        assert gone.status_code == 404 and "garbage collection" in gone.json()["error"]["message"]
        assert c.get(f"{svc}/build/{new['id']}/sbom").status_code == 200
    assert (
        registry_get(first.live, name, index, "application/vnd.oci.image.index.v1+json").status_code
        == 404
    )
    new_index = f"manifests/{new['registry']['uri'].split('@', 1)[1].replace(':', '-')}"
    assert (
        registry_get(
            first.live, name, new_index, "application/vnd.oci.image.index.v1+json"
        ).status_code
        == 200
    )
