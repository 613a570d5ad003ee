"""Provider payloads parsed into one provider-neutral event.

Only what Shipyard acts on is read: the repository's URLs (to find the services that build
it), the ref and the commits before and after, a pull request's number, head and base, and
the head commit's message as the payload gives it (the mirror's copy wins when it can be
read). Everything else in a payload is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.builds.refs import is_valid_branch, is_valid_sha
from shipyard.webhooks.signatures import Provider

ZERO_SHA = "0" * 40
# Pull request actions that mean "this head should be built" (GitHub / Gitea / GitLab).
PR_BUILD_ACTIONS = {
    Provider.GITHUB: {"opened": "opened", "synchronize": "synchronize", "reopened": "reopened"},
    Provider.GITEA: {"opened": "opened", "synchronized": "synchronize", "reopened": "reopened"},
    Provider.GITLAB: {"open": "opened", "update": "synchronize", "reopen": "reopened"},
}


class BadPayload(ValueError):
    """The delivery is signed but not a payload Shipyard can read."""


@dataclass(frozen=True)
class Ping:
    event: str


@dataclass(frozen=True)
class Ignored:
    """A signed delivery of an event (or action) that never builds: recorded with why."""

    event: str
    action: str | None
    reason: str
    repository_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Push:
    event: str
    repository_urls: tuple[str, ...]
    ref: str
    before: str
    after: str
    default_branch: str | None
    head_message: str | None
    forced: bool = False

    @property
    def branch(self) -> str | None:
        name = self.ref.removeprefix("refs/heads/")
        return name if self.ref.startswith("refs/heads/") and is_valid_branch(name) else None

    @property
    def deleted(self) -> bool:
        return self.after == ZERO_SHA

    @property
    def created(self) -> bool:
        return self.before == ZERO_SHA


@dataclass(frozen=True)
class PullRequest:
    event: str
    action: str  # opened | synchronize | reopened (normalised)
    repository_urls: tuple[str, ...]
    number: int
    head_sha: str
    head_branch: str
    base_branch: str
    before: str | None  # the previous head, when the provider says (synchronize / update)
    head_message: str | None
    head_ref: str  # refs/pull/N/head or refs/merge-requests/N/head


Event = Ping | Ignored | Push | PullRequest


def delivery_id(provider: Provider, headers: Mapping[str, str], body: bytes) -> str:
    """The provider's id of this delivery (the same on its redeliveries), else a digest of
    the body: a replayed body is then a replay too."""
    names = {
        Provider.GITHUB: ("x-github-delivery",),
        # Idempotency-Key stays the same across GitLab's retries; the event UUID otherwise.
        Provider.GITLAB: ("idempotency-key", "x-gitlab-event-uuid"),
        Provider.GITEA: ("x-gitea-delivery", "x-forgejo-delivery", "x-github-delivery"),
    }[provider]
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value[:255]
    return "body-sha256:" + hashlib.sha256(body).hexdigest()


def event_name(provider: Provider, headers: Mapping[str, str]) -> str:
    names = {
        Provider.GITHUB: ("x-github-event",),
        Provider.GITLAB: ("x-gitlab-event",),
        Provider.GITEA: ("x-gitea-event", "x-forgejo-event", "x-gogs-event", "x-github-event"),
    }[provider]
    for name in names:
        if value := headers.get(name, "").strip():
            return value[:64]
    return ""


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(f"{where} is missing or not an object")
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _sha(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_valid_sha(value.lower()):
        raise BadPayload(f"{where} is not a 40-hex commit sha")
    return value.lower()


def _optional_sha(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and is_valid_sha(value.lower()) else None


def _urls(*objects: Any, keys: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for obj in objects:
        if isinstance(obj, dict):
            found += [v for k in keys if (v := _str(obj.get(k))) is not None]
    return tuple(dict.fromkeys(found))


_GITHUB_URL_KEYS = ("clone_url", "ssh_url", "git_url", "html_url", "svn_url", "url")
_GITLAB_URL_KEYS = ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url", "url",
                    "homepage")  # fmt: skip


def parse(provider: Provider, headers: Mapping[str, str], payload: Any) -> Event:
    event = event_name(provider, headers)
    body = _dict(payload, "the body")
    if provider is Provider.GITLAB:
        return _gitlab(event, body)
    return _github_like(provider, event, body)


def _github_like(provider: Provider, event: str, body: dict[str, Any]) -> Event:
    if event == "ping":
        return Ping(event)
    repo = body.get("repository")
    urls = _urls(repo, keys=_GITHUB_URL_KEYS)
    if event == "push":
        head = body.get("head_commit")
        commits = body.get("commits")
        message = _str(head.get("message")) if isinstance(head, dict) else None
        if message is None and isinstance(commits, list) and commits:
            last = commits[-1]
            message = _str(last.get("message")) if isinstance(last, dict) else None
        ref = _str(body.get("ref"))
        if ref is None:
            raise BadPayload("ref is missing")
        return Push(
            event=event,
            repository_urls=urls,
            ref=ref,
            before=_sha(body.get("before"), "before"),
            after=_sha(body.get("after"), "after"),
            default_branch=_str(repo.get("default_branch")) if isinstance(repo, dict) else None,
            head_message=message,
            forced=body.get("forced") is True,
        )
    if event in ("pull_request", "pull_request_sync"):
        action = str(body.get("action") or "")
        normal = PR_BUILD_ACTIONS[provider].get(action)
        if normal is None:
            return Ignored(event, action, f"pull request action '{action}' does not build", urls)
        pr = _dict(body.get("pull_request"), "pull_request")
        number = body.get("number", pr.get("number"))
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise BadPayload("number is not a positive integer")
        head = _dict(pr.get("head"), "pull_request.head")
        base = _dict(pr.get("base"), "pull_request.base")
        before = _optional_sha(body.get("before"))
        return PullRequest(
            event=event,
            action=normal,
            repository_urls=urls,
            number=number,
            head_sha=_sha(head.get("sha"), "pull_request.head.sha"),
            head_branch=str(head.get("ref") or ""),
            base_branch=str(base.get("ref") or ""),
            before=before,
            head_message=None,
            head_ref=f"refs/pull/{number}/head",
        )
    return Ignored(event or "unknown", None, f"event '{event}' does not build", urls)


def _gitlab(event: str, body: dict[str, Any]) -> Event:
    kind = body.get("object_kind") or body.get("event_name")
    urls = _urls(body.get("project"), body.get("repository"), keys=_GITLAB_URL_KEYS)
    project = body.get("project") if isinstance(body.get("project"), dict) else {}
    assert isinstance(project, dict)
    if kind == "push":
        commits = body.get("commits")
        after = _sha(body.get("after"), "after")
        message = None
        if isinstance(commits, list):
            for commit in commits:
                if isinstance(commit, dict) and commit.get("id") == after:
                    message = _str(commit.get("message"))
        ref = _str(body.get("ref"))
        if ref is None:
            raise BadPayload("ref is missing")
        return Push(
            event=event or "Push Hook",
            repository_urls=urls,
            ref=ref,
            before=_sha(body.get("before"), "before"),
            after=after,
            default_branch=_str(project.get("default_branch")),
            head_message=message,
        )
    if kind == "merge_request":
        attrs = _dict(body.get("object_attributes"), "object_attributes")
        action = str(attrs.get("action") or "")
        normal = PR_BUILD_ACTIONS[Provider.GITLAB].get(action)
        oldrev = attrs.get("oldrev")
        # An "update" without oldrev changed the title, labels, …: no new code to build.
        if normal is None or (action == "update" and not oldrev):
            why = f"merge request action '{action}' does not build"
            if action == "update":
                why = "merge request update without new commits does not build"
            return Ignored(event or "Merge Request Hook", action, why, urls)
        number = attrs.get("iid")
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise BadPayload("object_attributes.iid is not a positive integer")
        last = _dict(attrs.get("last_commit"), "object_attributes.last_commit")
        return PullRequest(
            event=event or "Merge Request Hook",
            action=normal,
            repository_urls=urls,
            number=number,
            head_sha=_sha(last.get("id"), "object_attributes.last_commit.id"),
            head_branch=str(attrs.get("source_branch") or ""),
            base_branch=str(attrs.get("target_branch") or ""),
            before=_optional_sha(oldrev),
            head_message=_str(last.get("message")),
            head_ref=f"refs/merge-requests/{number}/head",
        )
    name = event or str(kind or "unknown")
    return Ignored(name, None, f"event '{name}' does not build", urls)
