"""Deliveries shaped like each provider's documented payloads and headers (GitHub "Webhook
events and payloads", GitLab "Webhook events", Gitea "Webhooks"), for a repository at
``url``; ``signed_*`` add the provider's proof for ``secret``."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

ZERO = "0" * 40


def _repo_github(url: str) -> dict[str, Any]:
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": "app",
        "full_name": "octocat/app",
        "private": False,
        "owner": {"login": "octocat", "id": 1, "type": "User"},
        "html_url": "https://github.com/octocat/app",
        "clone_url": url,
        "git_url": "git://github.com/octocat/app.git",
        "ssh_url": "git@github.com:octocat/app.git",
        "svn_url": "https://github.com/octocat/app",
        "default_branch": "main",
        "master_branch": "main",
    }


def _commit(sha: str, message: str) -> dict[str, Any]:
    person = {"name": "Monalisa Octocat", "email": "mona@example.com", "username": "mona"}
    return {
        "id": sha,
        "tree_id": "0" * 40,
        "distinct": True,
        "message": message,
        "timestamp": "2026-12-04T17:00:00Z",
        "url": f"https://example.com/commit/{sha}",
        "author": person,
        "committer": person,
        "added": [],
        "removed": [],
        "modified": [],
    }


def github_push(url: str, ref: str, before: str, after: str, message: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": _repo_github(url),
        "pusher": {"name": "mona", "email": "mona@example.com"},
        "sender": {"login": "mona", "id": 2},
        "created": before == ZERO,
        "deleted": after == ZERO,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/octocat/app/compare/{before[:12]}...{after[:12]}",
        "commits": [_commit(after, message)] if after != ZERO else [],
        "head_commit": _commit(after, message) if after != ZERO else None,
    }


def github_pull_request(
    url: str, action: str, number: int, head_ref: str, head_sha: str, base_ref: str = "main",
    before: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    repo = _repo_github(url)
    body: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/octocat/app/pulls/{number}",
            "id": 1000 + number,
            "number": number,
            "state": "open",
            "title": "A change",
            "user": {"login": "mona"},
            "head": {"label": f"octocat:{head_ref}", "ref": head_ref, "sha": head_sha,
                     "repo": repo},
            "base": {"label": f"octocat:{base_ref}", "ref": base_ref, "sha": "1" * 40,
                     "repo": repo},
        },
        "repository": repo,
        "sender": {"login": "mona", "id": 2},
    }  # fmt: skip
    if before is not None:
        body["before"], body["after"] = before, head_sha
    return body


def github_headers(event: str, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "79929171",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature"] = f"sha1={sha1}"
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


def _project_gitlab(url: str) -> dict[str, Any]:
    return {
        "id": 15,
        "name": "app",
        "description": "",
        "web_url": "https://gitlab.example.com/mike/app",
        "avatar_url": None,
        "git_ssh_url": "git@gitlab.example.com:mike/app.git",
        "git_http_url": url,
        "namespace": "Mike",
        "visibility_level": 0,
        "path_with_namespace": "mike/app",
        "default_branch": "main",
        "homepage": "https://gitlab.example.com/mike/app",
        "url": "git@gitlab.example.com:mike/app.git",
        "ssh_url": "git@gitlab.example.com:mike/app.git",
        "http_url": url,
    }


def gitlab_push(url: str, ref: str, before: str, after: str, message: str) -> dict[str, Any]:
    project = _project_gitlab(url)
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": after,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "project_id": 15,
        "project": project,
        "repository": {
            "name": "app",
            "url": project["url"],
            "description": "",
            "homepage": project["homepage"],
            "git_http_url": url,
            "git_ssh_url": project["git_ssh_url"],
            "visibility_level": 0,
        },
        "commits": [
            {**_commit(after, message), "title": message.splitlines()[0] if message else ""}
        ],
        "total_commits_count": 1,
    }


def gitlab_merge_request(
    url: str, action: str, iid: int, source: str, head_sha: str, message: str,
    oldrev: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    project = _project_gitlab(url)
    attrs: dict[str, Any] = {
        "id": 99,
        "iid": iid,
        "target_branch": "main",
        "source_branch": source,
        "source_project_id": 15,
        "target_project_id": 15,
        "title": "MS-Viewport",
        "state": "opened",
        "merge_status": "unchecked",
        "url": f"https://gitlab.example.com/mike/app/-/merge_requests/{iid}",
        "source": project,
        "target": project,
        "last_commit": {"id": head_sha, "message": message, "title": message,
                        "timestamp": "2026-12-04T17:00:00+00:00",
                        "url": "https://gitlab.example.com/x", "author": {"name": "j"}},
        "action": action,
    }  # fmt: skip
    if oldrev is not None:
        attrs["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": project,
        "object_attributes": attrs,
        "labels": [],
        "changes": {},
        "repository": {"name": "app", "url": project["url"], "homepage": project["homepage"]},
    }


def gitlab_headers(event: str, token: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.6.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def gitea_push(url: str, ref: str, before: str, after: str, message: str) -> dict[str, Any]:
    repo = {
        "id": 140,
        "owner": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
        "name": "app",
        "full_name": "gitea/app",
        "private": False,
        "fork": False,
        "html_url": "http://localhost:3000/gitea/app",
        "ssh_url": "ssh://gitea@localhost:2222/gitea/app.git",
        "clone_url": url,
        "default_branch": "main",
    }
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "compare_url": f"http://localhost:3000/gitea/app/compare/{before}...{after}",
        "commits": [_commit(after, message)],
        "total_commits": 1,
        "head_commit": _commit(after, message),
        "repository": repo,
        "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
        "sender": {"id": 1, "login": "gitea", "username": "gitea"},
    }


def gitea_pull_request(url: str, action: str, number: int, head_ref: str, head_sha: str
                       ) -> dict[str, Any]:  # fmt: skip
    repo = gitea_push(url, "refs/heads/main", ZERO, "1" * 40, "")["repository"]
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "id": 1,
            "number": number,
            "title": "A change",
            "state": "open",
            "head": {"label": head_ref, "ref": head_ref, "sha": head_sha, "repo_id": 140,
                     "repo": repo},
            "base": {"label": "main", "ref": "main", "sha": "1" * 40, "repo_id": 140,
                     "repo": repo},
        },
        "repository": repo,
        "sender": {"id": 1, "login": "gitea"},
    }  # fmt: skip


def gitea_headers(event: str, body: bytes, secret: str | None) -> dict[str, str]:
    delivery = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Go-http-client/1.1",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Event-Type": event,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Event-Type": event,
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event,
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers.update({"X-Gitea-Signature": digest, "X-Gogs-Signature": digest,
                        "X-Hub-Signature-256": f"sha256={digest}"})  # fmt: skip
    return headers


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
