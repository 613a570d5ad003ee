"""The registry's side of collection, through its HTTP API as Shipyard's own identity (the
only principal the token endpoint grants ``delete``: ``registryauth.scopes``).

Deleting a manifest by digest also removes every tag that points at it (distribution does
that itself), so the moving tags of a collected image go with it. Blobs are freed later by
the offline ``garbage-collect`` (``EmbeddedRegistry.collect_garbage``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from shipyard.pipeline.registry import RegistryTarget

_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))  # fmt: skip
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NEXT = re.compile(r"<([^>]+)>")


class RegistryAdminError(RuntimeError):
    pass


@dataclass(frozen=True)
class Blobs:
    """The blobs one manifest references (config, layers; an index's children recursively
    are not followed: Shipyard pushes single-platform images)."""

    sizes: dict[str, int]


class RegistryAdmin:
    """One client for the whole collection run; a token per repository."""

    def __init__(self, target: RegistryTarget, *, timeout_s: float = 30.0) -> None:
        if target.username is None or target.password is None:
            raise ValueError("the registry admin needs Shipyard's internal credential")
        self._target = target
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._base = f"http://{target.host}"
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._client.close()

    def _token(self, name: str, challenge: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        params["scope"] = f"repository:{name}:pull,delete"
        auth = httpx.BasicAuth(self._target.username or "", self._target.password or "")
        got = self._client.get(realm, params=params, auth=auth)
        if got.status_code != 200:
            raise RegistryAdminError(f"the token endpoint refused a token ({got.status_code})")
        body = got.json()
        return str(body.get("token") or body.get("access_token"))

    def _request(self, method: str, name: str, path: str, **headers: str) -> httpx.Response:
        url = path if path.startswith("http") else f"{self._base}/v2/{name}/{path}"
        sent = dict(headers)
        if name in self._tokens:
            sent["Authorization"] = f"Bearer {self._tokens[name]}"
        try:
            response = self._client.request(method, url, headers=sent)
            if response.status_code == 401:
                self._tokens[name] = self._token(name, response.headers.get("www-authenticate", ""))
                sent["Authorization"] = f"Bearer {self._tokens[name]}"
                response = self._client.request(method, url, headers=sent)
        except httpx.HTTPError as exc:
            raise RegistryAdminError(f"registry unreachable: {exc}") from exc
        return response

    def tags(self, name: str) -> list[str]:
        found: list[str] = []
        path = "tags/list?n=1000"
        while path:
            got = self._request("GET", name, path)
            if got.status_code == 404:
                return found  # no such repository (nothing pushed yet)
            if got.status_code != 200:
                raise RegistryAdminError(f"listing the tags of {name}: {got.status_code}")
            found += got.json().get("tags") or []
            link = _NEXT.search(got.headers.get("link", ""))
            path = f"{self._base}{link.group(1)}" if link else ""
        return found

    def resolve(self, name: str, reference: str) -> str | None:
        got = self._request("HEAD", name, f"manifests/{reference}", Accept=_ACCEPT)
        if got.status_code != 200:
            return None
        digest = got.headers.get("docker-content-digest")
        return str(digest) if digest else None

    def manifest(self, name: str, digest: str) -> dict[str, object] | None:
        got = self._request("GET", name, f"manifests/{digest}", Accept=_ACCEPT)
        if got.status_code != 200:
            return None
        body: dict[str, object] = got.json()
        return body

    def config(self, name: str, digest: str) -> dict[str, object] | None:
        """The image config of manifest ``digest`` (None for an index or a missing one)."""
        config = (self.manifest(name, digest) or {}).get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            return None
        got = self._request("GET", name, f"blobs/{config['digest']}")
        if got.status_code != 200:
            return None
        try:
            body = got.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def blobs(self, name: str, digest: str) -> Blobs:
        body = self.manifest(name, digest) or {}
        sizes: dict[str, int] = {}
        config = body.get("config")
        layers = body.get("layers")
        for entry in [config, *(layers if isinstance(layers, list) else [])]:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                sizes[str(entry["digest"])] = int(entry.get("size") or 0)
        return Blobs(sizes)

    def delete(self, name: str, digest: str) -> bool:
        """True when the manifest is gone now (deleted, or was already)."""
        got = self._request("DELETE", name, f"manifests/{digest}")
        if got.status_code in (200, 202, 404):
            return True
        raise RegistryAdminError(
            f"deleting {name}@{digest}: the registry answered {got.status_code}"
        )

    def delete_referrers(self, name: str, digest: str) -> int:
        """Artifacts attached to ``digest`` through the OCI referrers tag schema (an index
        tagged ``sha256-<hex>``: SBOMs, provenance): without their subject they are garbage,
        and their tag would keep them forever."""
        tag = digest.replace(":", "-", 1)
        index_digest = self.resolve(name, tag)
        if index_digest is None:
            return 0
        index = self.manifest(name, index_digest) or {}
        children = index.get("manifests")
        removed = 0
        for child in children if isinstance(children, list) else []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                removed += self.delete(name, str(child["digest"]))
        self.delete(name, index_digest)
        return removed


def unique_bytes(doomed: Iterable[Blobs], kept: Iterable[Blobs]) -> int:
    """Bytes of blobs only the doomed manifests reference (an estimate: another repository
    may share a blob; ``garbage-collect`` then keeps it)."""
    keep = {d for blobs in kept for d in blobs.sizes}
    sizes: dict[str, int] = {}
    for blobs in doomed:
        sizes.update({d: s for d, s in blobs.sizes.items() if d not in keep})
    return sum(sizes.values())
