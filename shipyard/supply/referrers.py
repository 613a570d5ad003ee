"""Attach documents (the SBOM, the provenance) to an image in the registry as OCI artifacts:
an image manifest with an ``artifactType``, the empty config, the document as its one
layer and the image as its ``subject`` (OCI distribution 1.1).

A registry that answers the manifest PUT with ``OCI-Subject`` indexes referrers itself.
distribution 2.8 (the embedded registry) does not: then the referrers tag schema is kept by
hand — an OCI image index tagged ``sha256-<hex of the image digest>`` in the same
repository listing every artifact of that image. Garbage collection
(``gc.registry.RegistryAdmin.delete_referrers``) deletes exactly that index and its
children with the image.

Also reads them back (``fetch``) for ``GET …/build/{id}/sbom`` and ``…/provenance``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from shipyard.pipeline.registry import RegistryTarget

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
_ACCEPT = ", ".join((
    OCI_MANIFEST, OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))  # fmt: skip
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
# The fallback index is read, extended and written back: two builds of one image (identical
# builds) attaching at once would lose an entry. One Shipyard process writes them all.
_INDEX_LOCK = threading.Lock()


class ReferrerError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:abc…`` → ``sha256-abc…``."""
    return digest.replace(":", "-", 1)


@dataclass(frozen=True)
class Attached:
    digest: str  # the artifact manifest's digest
    size: int
    via_tag: bool  # True: listed in the sha256-<hex> index (the registry has no referrers API)


class OciClient:
    """Just enough of the distribution API, with distribution's token auth (or basic auth)
    as ``target``'s credential; one client per build or request."""

    def __init__(self, target: RegistryTarget, *, actions: str, timeout_s: float = 60.0) -> None:
        """``timeout_s`` bounds everything this client does, not each request: a registry
        that stops answering cannot hold a build (or the push gate) longer."""
        self._target = target
        self._deadline = time.monotonic() + timeout_s
        self._actions = actions  # "pull,push" to attach, "pull" to read
        scheme = "http" if target.insecure else "https"
        self._base = f"{scheme}://{target.host}"
        # verify=False only for a registry marked insecure (plain HTTP on loopback).
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, verify=not target.insecure)
        self._auth: dict[str, str] = {}

    def close(self) -> None:
        self._client.close()

    def renew(self, timeout_s: float) -> None:
        """From now on, everything this client does is bounded by ``timeout_s``."""
        self._deadline = time.monotonic() + timeout_s

    def __enter__(self) -> OciClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _authorize(self, name: str, challenge: str) -> str:
        user, password = self._target.username or "", self._target.password or ""
        if challenge.lower().startswith("basic"):
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise ReferrerError("the registry asked for credentials without a token realm")
        params["scope"] = f"repository:{name}:{self._actions}"
        auth = httpx.BasicAuth(user, password) if self._target.username else None
        left = max(self._deadline - time.monotonic(), 0.001)
        got = self._client.get(realm, params=params, auth=auth, timeout=left)
        if got.status_code != 200:
            raise ReferrerError(f"the registry's token endpoint answered {got.status_code}")
        body = got.json()
        return f"Bearer {body.get('token') or body.get('access_token')}"

    def request(
        self, method: str, name: str, path: str, *, content: bytes | None = None, **headers: str
    ) -> httpx.Response:
        url = path if path.startswith("http") else f"{self._base}/v2/{name}/{path}"
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ReferrerError("the registry did not answer in time")
        timeout = httpx.Timeout(left)
        sent = dict(headers)
        if name in self._auth:
            sent["Authorization"] = self._auth[name]
        try:
            response = self._client.request(
                method, url, content=content, headers=sent, timeout=timeout
            )
            if response.status_code == 401:
                challenge = response.headers.get("www-authenticate", "")
                self._auth[name] = self._authorize(name, challenge)
                sent["Authorization"] = self._auth[name]
                timeout = httpx.Timeout(max(self._deadline - time.monotonic(), 0.001))
                response = self._client.request(
                    method, url, content=content, headers=sent, timeout=timeout
                )
        except httpx.HTTPError as exc:
            raise ReferrerError(f"registry unreachable: {type(exc).__name__}") from exc
        return response

    # --- blobs and manifests -----------------------------------------------------------

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        if self.request("HEAD", name, f"blobs/{digest}").status_code == 200:
            return digest
        started = self.request("POST", name, "blobs/uploads/")
        if started.status_code != 202:
            raise ReferrerError(f"starting a blob upload: {started.status_code}")
        location = started.headers.get("location", "")
        if not location.startswith("http"):
            location = self._base + location
        sep = "&" if "?" in location else "?"
        put = self.request("PUT", name, f"{location}{sep}digest={digest}", content=data,
                           **{"Content-Type": "application/octet-stream"})  # fmt: skip
        if put.status_code != 201:
            raise ReferrerError(f"uploading a blob: {put.status_code}")
        return digest

    def put_manifest(
        self, name: str, reference: str, body: bytes, media_type: str
    ) -> httpx.Response:
        put = self.request("PUT", name, f"manifests/{reference}", content=body,
                           **{"Content-Type": media_type})  # fmt: skip
        if put.status_code != 201:
            raise ReferrerError(f"pushing a manifest: {put.status_code} {put.text[:200]}")
        return put

    def manifest(self, name: str, reference: str) -> tuple[bytes, str] | None:
        got = self.request("GET", name, f"manifests/{reference}", Accept=_ACCEPT)
        if got.status_code == 404:
            return None
        if got.status_code != 200:
            raise ReferrerError(f"reading manifest {reference}: {got.status_code}")
        return got.content, got.headers.get("content-type", "")

    def blob(self, name: str, digest: str, *, limit: int = MAX_DOCUMENT_BYTES) -> bytes | None:
        got = self.request("GET", name, f"blobs/{digest}")
        if got.status_code == 404:
            return None
        if got.status_code != 200:
            raise ReferrerError(f"reading blob {digest}: {got.status_code}")
        if len(got.content) > limit or sha256(got.content) != digest:
            raise ReferrerError(f"blob {digest} is not what its digest says")
        return got.content

    # --- artifacts ---------------------------------------------------------------------

    def attach(
        self,
        name: str,
        subject: str,
        *,
        artifact_type: str,
        document: bytes,
        annotations: dict[str, str],
    ) -> Attached:
        """Push ``document`` as an artifact whose subject is ``name@subject``."""
        return self.attach_all(name, subject, [(artifact_type, document, annotations)])[0]

    def attach_all(
        self,
        name: str,
        subject: str,
        artifacts: list[tuple[str, bytes, dict[str, str]]],
        *,
        pushed: frozenset[str] = frozenset(),
    ) -> list[Attached]:
        """Push each ``(artifact type, document, annotations)`` as an artifact whose subject
        is ``name@subject``: the subject read once, the referrers index (without a referrers
        API) written once for all of them. ``pushed``: blob digests already uploaded to
        ``name`` by this client (``push_blob``), not checked again."""
        found = self.manifest(name, subject)
        if found is None:
            raise ReferrerError(f"the image {subject} is not in {name}")
        subject_body, subject_type = found
        subject_descriptor = {
            "mediaType": subject_type.split(";")[0] or OCI_MANIFEST,
            "digest": subject,
            "size": len(subject_body),
        }
        if sha256(EMPTY) not in pushed:
            self.push_blob(name, EMPTY)
        done: list[Attached] = []
        unlisted: list[dict[str, Any]] = []
        for artifact_type, document, notes in artifacts:
            layer = sha256(document)
            if layer not in pushed:
                self.push_blob(name, document)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": artifact_type,
                    "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY), "size": 2},
                    "layers": [
                        {"mediaType": artifact_type, "digest": layer, "size": len(document)}
                    ],
                    "subject": subject_descriptor,
                    "annotations": notes,
                },
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
            digest = sha256(manifest)
            put = self.put_manifest(name, digest, manifest, OCI_MANIFEST)
            if put.headers.get("oci-subject") == subject:
                done.append(Attached(digest, len(manifest), via_tag=False))
                continue
            unlisted.append({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                "artifactType": artifact_type, "annotations": notes,
            })  # fmt: skip
            done.append(Attached(digest, len(manifest), via_tag=True))
        if unlisted:
            self._list_in_fallback_index(name, subject, unlisted)
        return done

    def _list_in_fallback_index(
        self, name: str, subject: str, entries: list[dict[str, Any]]
    ) -> None:
        with _INDEX_LOCK:
            self._extend_index(name, subject, entries)

    def _extend_index(self, name: str, subject: str, entries: list[dict[str, Any]]) -> None:
        tag = fallback_tag(subject)
        found = self.manifest(name, tag)
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if found is not None:
            try:
                loaded = json.loads(found[0])
            except ValueError:
                loaded = None
            if isinstance(loaded, dict) and isinstance(loaded.get("manifests"), list):
                index = loaded
        new = {entry["digest"] for entry in entries}
        manifests = [m for m in index["manifests"] if m.get("digest") not in new]
        index["manifests"] = [*manifests, *entries]
        body = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
        self.put_manifest(name, tag, body, OCI_INDEX)

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """The artifacts attached to ``subject``: the referrers API, else the tag schema."""
        got = self.request("GET", name, f"referrers/{subject}", Accept=OCI_INDEX)
        if got.status_code == 200 and got.headers.get("content-type", "").startswith(OCI_INDEX):
            listed = got.json().get("manifests")
            return list(listed) if isinstance(listed, list) else []
        found = self.manifest(name, fallback_tag(subject))
        if found is None:
            return []
        listed = json.loads(found[0]).get("manifests")
        return list(listed) if isinstance(listed, list) else []

    def fetch(self, name: str, artifact: str) -> tuple[bytes, str] | None:
        """The document of artifact manifest ``artifact`` and its media type, or None when
        it is gone (collected with its image)."""
        found = self.manifest(name, artifact)
        if found is None:
            return None
        manifest = json.loads(found[0])
        layers = manifest.get("layers") or []
        if not layers or not isinstance(layers[0], dict):
            raise ReferrerError(f"artifact {artifact} has no document")
        document = self.blob(name, str(layers[0]["digest"]))
        if document is None:
            return None
        return document, str(layers[0].get("mediaType") or manifest.get("artifactType"))
