"""The issue's acceptance, end to end on a live server: real git pushes, deliveries shaped
like GitHub's / GitLab's / Gitea's (headers included), real builds, and a loopback receiver
that gets a correctly signed notification per concluded build."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipyard.notify.signing import verify
from shipyard.pipeline.builder import unmount_under
from tests.helpers import webhook_payloads as wp
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import (
    BIN,
    LiveServer,
    remove_sandbox,
    seed_base_image,
    start_server,
    stop_server,
)
from tests.helpers.receiver import Receiver, receiver, wait_for
from tests.helpers.upstream import Upstream

pytestmark = pytest.mark.slow

DOCKERFILE = f"FROM {BUSYBOX_IMAGE}\nCOPY app.txt /app.txt\nRUN cat /app.txt\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("shipyard-hooks")
    data_dir = root / "data"
    store = seed_base_image(data_dir)
    proc, live = start_server(
        data_dir, SHIPYARD_NOTIFY_ALLOW_PRIVATE_URLS="true", SHIPYARD_NOTIFY_POLL_S="0.2"
    )
    try:
        yield live
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data_dir)


@pytest.fixture(scope="module")
def notified() -> Iterator[Receiver]:
    with receiver() as rx:
        yield rx


class Project:
    def __init__(self, live: LiveServer, up: Upstream, rx: Receiver) -> None:
        self.live, self.up = live, up
        self.c = live.client()
        self.id = self._ok("POST", "/v1/projects", json={"name": "hooked"})["id"]
        self.secret = self._ok("POST", f"/v1/projects/{self.id}/webhook")["secret"]
        self.notify_secret = self._ok(
            "POST", f"/v1/projects/{self.id}/notifications", json={"url": rx.url}
        )["secret"]

    def _ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.c.request(method, path, **kw)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def service(self, kind: str, name: str, branch: str | None, **extra: Any) -> str:
        vcs = {"projectUrl": self.up.url, "projectType": "self-hosted",
               **({"projectBranch": branch} if branch else {})}  # fmt: skip
        body = {"name": name, "vcsData": vcs,
                "buildSettings": {"dockerfile": {"dockerFilePath": "/Dockerfile",
                                                 "dockerWorkDir": "/"}}, **extra}  # fmt: skip
        return str(self._ok("POST", f"/v1/projects/{self.id}/services/{kind}", json=body)["id"])

    def deliver(self, provider: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(f"{self.live.url}/v1/webhooks/{provider}/{self.id}", content=body,
                          headers=headers, timeout=60)  # fmt: skip

    def github(self, event: str, payload: dict[str, Any], secret: str | None = None) -> Any:
        body = wp.encode(payload)
        r = self.deliver("github", wp.github_headers(event, body, secret or self.secret), body)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def started(self, data: Any, service: str) -> str:
        [entry] = [r for r in data["results"] if r["id"] == service]
        assert entry["outcome"] == "started", entry
        return str(entry["buildId"])

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "shipyard"), *args],
            env={"SHIPYARD_URL": self.live.url, "SHIPYARD_TOKEN": self.live.token,
                 "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout

    def wait(self, service: str, build_id: str) -> Any:
        return self.live.wait(f"/v1/projects/{self.id}/services/{service}/build/{build_id}",
                              timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def project(server: LiveServer, notified: Receiver, tmp_path_factory: pytest.TempPathFactory
            ) -> Project:  # fmt: skip
    up = Upstream(tmp_path_factory.mktemp("upstream"))
    up.commit({"Dockerfile": DOCKERFILE, "app.txt": "v1\n", "docs/readme.md": "d\n"}, "initial")
    return Project(server, up, notified)


def test_acceptance(project: Project, notified: Receiver) -> None:
    p, up = project, project.up
    web = p.service("combined", "web", "main",
                    buildConfiguration={"pathIgnoreRules": ["docs/**"],
                                        "ciIgnoreFlagsEnabled": True})  # fmt: skip
    builder = p.service("build", "pr-builder", None,
                        buildConfiguration={"prRestrictions": ["feature/*"]})  # fmt: skip
    concluded: list[str] = []

    # 1. A push to main builds the combined service (and says it started it).
    start = up.git("rev-parse", "HEAD")
    v2 = up.commit({"app.txt": "v2\n"}, "app v2")
    data = p.github("push", wp.github_push(up.url, "refs/heads/main", start, v2, "app v2"))
    build_id = p.started(data, web)
    build = p.wait(web, build_id)
    assert build["status"] == "SUCCESS" and build["sha"] == v2, build
    assert build["trigger"]["type"] == "webhook" and build["trigger"]["deliveryId"] == data["id"]
    shown = p.cli("get", "service", "build", "-p", p.id, "-s", web, "-b", build_id)
    assert f"webhook (github push, delivery {data['id']})" in shown
    concluded.append(build_id)

    # 2. Only ignored paths: skipped with the reason, nothing started.
    docs = up.commit({"docs/readme.md": "more\n"}, "docs")
    data = p.github("push", wp.github_push(up.url, "refs/heads/main", v2, docs, "docs"))
    [entry] = [r for r in data["results"] if r["id"] == web]
    assert entry == {"entity": "service", "id": web, "outcome": "skipped",
                     "reason": "only ignored paths changed: docs/** (1 changed)",
                     "text": "skipped: only ignored paths changed: docs/** (1 changed)"}  # fmt: skip

    # 3. The net diff touches a watched path though the tip does not: builds the tip.
    v3 = up.commit({"app.txt": "v3\n"}, "app v3")
    tip = up.commit({"docs/readme.md": "again\n"}, "docs again")
    data = p.github("push", wp.github_push(up.url, "refs/heads/main", docs, tip, "docs again"))
    build_id = p.started(data, web)
    build = p.wait(web, build_id)
    assert build["status"] == "SUCCESS" and build["sha"] == tip and v3 != tip
    concluded.append(build_id)

    # 4. [skip ci] skips (GitLab's shape this time, with its token).
    skip = up.commit({"app.txt": "v4\n"}, "tweak [skip ci]")
    body = wp.encode(wp.gitlab_push(up.url, "refs/heads/main", tip, skip, "tweak [skip ci]"))
    r = p.deliver("gitlab", wp.gitlab_headers("Push Hook", p.secret), body)
    assert r.status_code == 200, r.text
    assert {x["id"]: x["text"] for x in r.json()["data"]["results"]}[web] == (
        "skipped: commit message has [skip ci]"
    )

    # 5. A pull request builds the build service at the PR's head (Gitea's shape).
    head = up.commit({"app.txt": "pr\n"}, "pr work", branch="feature/pr")
    up.set_ref("refs/pull/8/head", head)
    body = wp.encode(wp.gitea_pull_request(up.url, "opened", 8, "feature/pr", head))
    r = p.deliver("gitea", wp.gitea_headers("pull_request", body, p.secret), body)
    assert r.status_code == 200, r.text
    build_id = p.started(r.json()["data"], builder)
    build = p.wait(builder, build_id)
    assert build["status"] == "SUCCESS" and build["sha"] == head and build["pullRequestId"] == 8
    concluded.append(build_id)

    # 6. A bad signature: 401, no build, nothing recorded.
    before = len(p._ok("GET", f"/v1/projects/{p.id}/webhook/deliveries")["deliveries"])
    body = wp.encode(wp.github_push(up.url, "refs/heads/main", skip, skip, "x"))
    r = p.deliver("github", wp.github_headers("push", body, "not-the-secret"), body)
    assert r.status_code == 401
    listed = p._ok("GET", f"/v1/projects/{p.id}/webhook/deliveries")["deliveries"]
    assert len(listed) == before == 5
    assert len(p._ok("GET", f"/v1/projects/{p.id}/services/{web}/build")["builds"]) == 2

    # 7. Every outcome is in the deliveries API (and the CLI), newest first.
    assert listed[0]["provider"] == "gitea" and listed[0]["pullRequestId"] == 8
    assert {x["id"]: x["text"] for x in listed[0]["results"]} == {
        builder: f"started {build_id}",
        web: "skipped: pull requests build only build services (this is a combined service)",
    }
    assert [d["provider"] for d in listed] == ["gitea", "gitlab", "github", "github", "github"]
    cli = p.cli("deliveries", "-p", p.id, "-o", "json")
    rows = [json.loads(line) for line in cli.splitlines()]
    assert [r["id"] for r in rows] == [d["id"] for d in listed]

    # 8. The loopback receiver got one correctly signed notification per concluded build.
    requests = wait_for(notified, len(concluded))
    time.sleep(1)  # nothing more arrives
    got = {}
    for request in notified.requests:
        assert verify(p.notify_secret, request.body,
                      request.headers["x-shipyard-signature-256"])  # fmt: skip
        payload = json.loads(request.body)
        assert payload["event"] == "build.concluded" and payload["build"]["concluded"] is True
        got[payload["build"]["id"]] = payload["build"]["status"]
    assert got == dict.fromkeys(concluded, "SUCCESS")
    assert len(requests) == len(notified.requests) == len(concluded)
