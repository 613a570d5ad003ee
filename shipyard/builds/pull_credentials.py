"""A project's credentials for pulling private base images from external registries: registry
host → username/password, sealed on the project row (bound to it), handed to each build's
authfile, never returned (a read shows hosts and usernames only)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shipyard.builds.errors import InvalidRequest
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Project

MAX_REGISTRIES = 32
MAX_FIELD = 4096
# A registry host as auth files key it: DNS name or IPv4, optional port (no scheme, no path).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::\d{{1,5}})?$")


@dataclass(frozen=True)
class PullCredential:
    username: str
    password: str


def _context(project_id: str) -> str:
    return f"project:{project_id}:registry-pull-credentials"


def validate(registries: Mapping[str, PullCredential]) -> dict[str, PullCredential]:
    if len(registries) > MAX_REGISTRIES:
        raise InvalidRequest(f"registries: at most {MAX_REGISTRIES} registries")
    checked: dict[str, PullCredential] = {}
    for host, credential in registries.items():
        normal = host.strip().lower()
        if not _HOST.match(normal):
            raise InvalidRequest(
                f"registries.{host}: a registry host such as registry.example.com or "
                "host:5000 (no scheme, no path)",
                {"field": f"registries.{host}"},
            )
        for name, value in (("username", credential.username), ("password", credential.password)):
            if not value or len(value) > MAX_FIELD or any(c in value for c in "\r\n\0"):
                raise InvalidRequest(
                    f"registries.{host}.{name}: 1-{MAX_FIELD} characters, one line",
                    {"field": f"registries.{host}.{name}"},
                )
        checked[normal] = credential
    return checked


def store(box: SecretBox, project: Project, registries: Mapping[str, PullCredential]) -> None:
    """Replace the project's set (empty: remove it)."""
    checked = validate(registries)
    project.registry_pull_credentials_enc = (
        box.seal(
            {h: {"username": c.username, "password": c.password} for h, c in checked.items()},
            _context(project.id),
        )
        if checked
        else None
    )


def stored(box: SecretBox, project: Project) -> dict[str, PullCredential]:
    if project.registry_pull_credentials_enc is None:
        return {}
    values = box.open(project.registry_pull_credentials_enc, _context(project.id))
    return {
        str(host): PullCredential(str(v["username"]), str(v["password"]))
        for host, v in values.items()
    }
