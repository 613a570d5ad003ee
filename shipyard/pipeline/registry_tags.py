"""More tags for a pushed image, straight through the registry API (a manifest GET and PUT
per tag: milliseconds, where another ``buildah push`` costs a quarter of a second).

Tags (docs in README, "Image tags"): ``:<build id>`` for every build (immutable: build ids are
unique), ``:<sha>`` for the commit, ``:<branch>`` moving with the branch, ``:latest`` for the
service's own branch. ``registry.uri`` is always ``repository@digest``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

from shipyard.pipeline.errors import PushFailed, short_cause
from shipyard.pipeline.registry import RegistryTarget

_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))  # fmt: skip
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def tag_for_branch(branch: str) -> str | None:
    """A valid tag for a branch name (``feature/x`` -> ``feature-x``), or None."""
    tag = _TAG_BAD.sub("-", branch).lstrip(".-")[:128]
    return tag or None


def image_tags(
    build_id: str, sha: str | None, branch: str | None, default_branch: str | None
) -> list[str]:
    tags = [build_id]
    if sha:
        tags.append(sha)
    if branch and (branch_tag := tag_for_branch(branch)) and branch_tag not in tags:
        tags.append(branch_tag)
        if default_branch and branch == default_branch:
            tags.append("latest")
    return tags


class _Session:
    """One repository on one registry, with its auth challenge answered once."""

    def __init__(self, target: RegistryTarget, name: str, timeout_s: float) -> None:
        self.target, self.name = target, name
        self.client = httpx.Client(timeout=timeout_s, verify=not target.insecure, trust_env=False)
        self.base = self._base()
        self.auth: str | None = None

    def _base(self) -> str:
        if not self.target.insecure:
            return f"https://{self.target.host}"
        # buildah's --tls-verify=false: HTTPS without verification, else plain HTTP.
        try:
            self.client.get(f"https://{self.target.host}/v2/")
            return f"https://{self.target.host}"
        except httpx.HTTPError:
            return f"http://{self.target.host}"

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        url = f"{self.base}/v2/{self.name}/{path}"
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if self.auth:
            headers["Authorization"] = self.auth
        response = self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
        if response.status_code == 401 and self.auth is None:
            self.auth = self._authorize(response.headers.get("www-authenticate", ""))
            headers["Authorization"] = self.auth
            response = self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
        return response

    def _authorize(self, challenge: str) -> str:
        user, password = self.target.username or "", self.target.password or ""
        basic = httpx.BasicAuth(user, password)
        if challenge.lower().startswith("basic"):
            return str(basic._auth_header)
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        params["scope"] = f"repository:{self.name}:pull,push"
        token = self.client.get(realm, params=params, auth=basic if user else None)
        if token.status_code != 200:
            raise PushFailed(
                f"could not tag the image: the registry refused a token ({token.status_code})"
            )
        body = token.json()
        return f"Bearer {body.get('token') or body.get('access_token')}"


def add_tags(
    target: RegistryTarget, repository: str, digest: str, tags: Iterable[str],
    *, timeout_s: float = 30.0,
) -> None:  # fmt: skip
    """Point each of ``tags`` of ``repository`` (``host[/prefix]/project/name``) at ``digest``."""
    name = repository.split("/", 1)[1]
    session = _Session(target, name, timeout_s)
    try:
        got = session.request("GET", f"manifests/{digest}", headers={"Accept": _ACCEPT})
        if got.status_code != 200:
            raise PushFailed(
                f"could not tag the image: manifest {digest} answered {got.status_code}"
            )
        media_type = got.headers.get("content-type", "application/vnd.oci.image.manifest.v1+json")
        for tag in tags:
            put = session.request("PUT", f"manifests/{tag}", content=got.content,
                                  headers={"Content-Type": media_type})  # fmt: skip
            if put.status_code not in (200, 201):
                raise PushFailed(
                    f"could not tag the image :{tag}: the registry answered {put.status_code}"
                )
    except httpx.HTTPError as exc:
        raise PushFailed(
            f"could not tag the image: registry unreachable ({short_cause(str(exc))})"
        ) from exc
    finally:
        session.client.close()
