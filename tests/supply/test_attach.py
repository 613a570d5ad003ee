"""Attaching the SBOM and the provenance (OCI referrers tag schema) against a fake
distribution 2.8: what is sent, and how often."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.pipeline.registry import RegistryTarget
from shipyard.supply import attach as attach_module
from shipyard.supply import referrers
from shipyard.supply.attach import Attacher, Sbom
from shipyard.supply.labels import Origin
from shipyard.supply.provenance import BuildFacts

IMAGE = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
IMAGE_DIGEST = "sha256:" + hashlib.sha256(IMAGE).hexdigest()


class FakeRegistry:
    """Blobs, manifests and tags of one repository; no referrers API (like distribution
    2.8), so artifacts are listed in the ``sha256-<hex>`` index."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {
            IMAGE_DIGEST: (IMAGE, referrers.OCI_MANIFEST)
        }
        self.calls: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v2/p/app/")
        kind = path.split("/", 1)[0]
        self.calls[f"{request.method} {kind}"] += 1
        if kind == "blobs" and path.startswith("blobs/uploads"):
            if request.method == "POST":
                return httpx.Response(202, headers={"location": "/v2/p/app/blobs/uploads/1"})
            digest = request.url.params["digest"]
            assert "sha256:" + hashlib.sha256(request.content).hexdigest() == digest
            self.blobs[digest] = request.content
            return httpx.Response(201)
        if kind == "blobs":
            digest = path.split("/", 1)[1]
            return httpx.Response(200 if digest in self.blobs else 404)
        reference = path.split("/", 1)[1]
        if request.method == "PUT":
            body = request.content
            self.manifests[reference] = (body, request.headers["content-type"])
            return httpx.Response(201)
        if reference not in self.manifests:
            return httpx.Response(404)
        body, media_type = self.manifests[reference]
        return httpx.Response(200, content=body, headers={"content-type": media_type})


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    real = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(fake), timeout=kwargs.get("timeout"))

    monkeypatch.setattr(referrers.httpx, "Client", client)
    return fake


class _Made:
    def result(self, timeout_s: float = 300.0) -> Sbom:
        return Sbom(b'{"bomFormat":"CycloneDX"}', 3, 0.01)


def _facts() -> BuildFacts:
    return BuildFacts(
        build_id="b1", builder_id="urn:test", source_kind="git",
        origin=Origin("https://h/r.git", "a" * 40, 1_700_000_000), branch="main",
        upload_digest=None, upload_id=None, dockerfile="Dockerfile", context="/", target=None,
        build_args=(), build_files=(), secret_mounts=(), use_cache=True, base_images={},
        started=time.time(),
    )  # fmt: skip


def test_both_artifacts_with_one_subject_read_and_one_index_write(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    target = RegistryTarget("127.0.0.1:5000")
    attacher = Attacher(target, "127.0.0.1:5000/p/app", _Made(), timeout_s=30)  # type: ignore[arg-type]
    made = attacher.sbom(10)
    before = Counter(registry.calls)
    assert set(registry.blobs) == {
        referrers.sha256(referrers.EMPTY),
        referrers.sha256(made.document),
    }  # uploaded before the image's digest is known
    done = attacher.finish(IMAGE_DIGEST, sbom=made.document, facts=_facts(), timeout_s=30)
    attacher.close()
    after = registry.calls - before
    # The subject once; no blob checked again; the provenance blob, two manifests, one index.
    assert after["GET manifests"] == 2  # the subject, the index
    assert after["HEAD blobs"] == 1 and after["PUT blobs"] == 1  # the provenance only
    assert after["PUT manifests"] == 3
    assert done.via_tag and done.sbom_digest and done.provenance_digest
    index = json.loads(registry.manifests[referrers.fallback_tag(IMAGE_DIGEST)][0])
    assert [m["digest"] for m in index["manifests"]] == [done.sbom_digest, done.provenance_digest]
    for artifact in (done.sbom_digest, done.provenance_digest):
        manifest = json.loads(registry.manifests[artifact][0])
        assert manifest["subject"]["digest"] == IMAGE_DIGEST
    assert attach_module.EMPTY == referrers.EMPTY


def test_attaching_again_keeps_one_entry_per_artifact(registry: FakeRegistry) -> None:
    target = RegistryTarget("127.0.0.1:5000")
    first = attach_module.attach(target, "127.0.0.1:5000/p/app", IMAGE_DIGEST,
                                 sbom=b"{}", facts=_facts())  # fmt: skip
    again = attach_module.attach(target, "127.0.0.1:5000/p/app", IMAGE_DIGEST,
                                 sbom=b"{}", facts=_facts())  # fmt: skip
    index = json.loads(registry.manifests[referrers.fallback_tag(IMAGE_DIGEST)][0])
    digests = [m["digest"] for m in index["manifests"]]
    assert first.sbom_digest == again.sbom_digest and len(set(digests)) == len(digests)
