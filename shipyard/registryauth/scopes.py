"""Which registry actions a principal gets: a pure function of who it is and what it asks.

distribution expects the token server to grant the intersection of the requested and the
allowed actions and to say nothing about the rest; the registry then answers 401/403 for
whatever the token lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

PULL, PUSH, DELETE, ANY = "pull", "push", "delete", "*"
READ_WRITE = frozenset({PULL, PUSH})
EVERYTHING = frozenset({PULL, PUSH, DELETE, ANY})

# One path component of a repository name, as the distribution spec allows it.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")

AllProjects = Literal["all"]
Projects = AllProjects | frozenset[str]


@dataclass(frozen=True)
class Access:
    """One entry of the token's ``access`` claim (and one parsed ``scope`` parameter)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class Grant:
    """The most a principal may do. ``internal`` is Shipyard itself: every action, deletes
    and the catalog included; nothing else ever gets those."""

    subject: str
    pull: Projects = field(default_factory=frozenset)
    push: Projects = field(default_factory=frozenset)
    pull_shared: bool = False
    internal: bool = False


def parse_scope(text: str) -> list[Access]:
    """``repository:p/s:pull,push`` (a parameter may hold several, space-separated). Type and
    actions never contain ``:``; a name might (distribution allows a port in it), so the
    type ends at the first colon and the actions start after the last."""
    found: list[Access] = []
    for item in text.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            found.append(Access(kind, name, tuple(a for a in actions.split(",") if a)))
    return found


def valid_repository(name: str) -> bool:
    return all(_COMPONENT.match(part) for part in name.split("/"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "/")


def _contains(projects: Projects, project: str) -> bool:
    return projects == "all" or project in projects


def allowed_actions(grant: Grant, name: str, shared_prefixes: Sequence[str]) -> frozenset[str]:
    """What ``grant`` may do on repository ``name``."""
    if not valid_repository(name):
        return frozenset()
    if grant.internal:
        return EVERYTHING
    project = name.split("/", 1)[0]
    if "/" not in name:
        # Every repository Shipyard writes is <project>/<service>; a bare name is nobody's.
        return frozenset({PUSH, PULL}) if grant.push == "all" else frozenset()
    actions: set[str] = set()
    if any(_under(name, prefix) for prefix in shared_prefixes):
        # Shared images are read by every project and written only by the operator (a
        # principal over all projects), even if a project happens to be named like the prefix.
        if grant.pull_shared or _contains(grant.pull, project):
            actions.add(PULL)
        if grant.push == "all":
            actions.add(PUSH)
        return frozenset(actions)
    if _contains(grant.pull, project):
        actions.add(PULL)
    if _contains(grant.push, project):
        actions.add(PUSH)
    return frozenset(actions)


def grant_access(
    grant: Grant, requested: Iterable[Access], shared_prefixes: Sequence[str]
) -> list[Access]:
    """The requested access, narrowed to what ``grant`` allows; empty entries dropped."""
    granted: list[Access] = []
    for access in requested:
        if access.type == "repository":
            allowed = allowed_actions(grant, access.name, shared_prefixes)
        elif access.type == "registry" and access.name == "catalog" and grant.internal:
            allowed = frozenset({ANY})
        else:
            allowed = frozenset()
        actions = tuple(sorted({a for a in access.actions if a in allowed}))
        if actions:
            granted.append(Access(access.type, access.name, actions))
    return granted
