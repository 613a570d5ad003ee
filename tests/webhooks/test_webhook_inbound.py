"""Inbound webhooks through the API (builds stay QUEUED: no executor) against a real git
upstream, with deliveries shaped like each provider's documented payloads and headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from shipyard.store.models import ProjectWebhook
from shipyard.webhooks.receive import REFUSED
from tests.conftest import Factory
from tests.helpers import webhook_payloads as wp
from tests.helpers.upstream import Upstream
from tests.store.test_postgres import pg_url  # noqa: F401 (fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Every test on SQLite and on a scratch PostgreSQL database."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("pg_url")
    yield prepare(
        Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            admin_token=None,
            secret_key=None,
            allowed_local_roots=[tmp_path],
            allow_private_urls=True,
        )
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream(tmp_path / "git")
    up.commit({"Dockerfile": "FROM scratch\nCOPY app.txt /\n", "app.txt": "v1\n",
               "docs/readme.md": "docs\n"}, "initial")  # fmt: skip
    return up


class Hooks:
    def __init__(self, client: TestClient, factory: Factory, upstream: Upstream) -> None:
        self.client = client
        self.factory = factory
        self.up = upstream
        # Unique: the PostgreSQL database is shared by the module's tests.
        self.project = factory.project(f"Hooks {uuid.uuid4().hex[:8]}")
        self.secret = factory.ok("POST", f"/v1/projects/{self.project}/webhook")["secret"]

    def service(self, kind: str, name: str, branch: str | None = "main", **extra: Any) -> str:
        return self.factory.workload(self.project, f"services/{kind}", name, url=self.up.url,
                                     branch=branch, **extra)  # fmt: skip

    def send(self, provider: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        # No bearer token: the signature is the proof.
        return self.client.post(
            f"/v1/webhooks/{provider}/{self.project}", content=body,
            headers={"Authorization": "", **headers},
        )  # fmt: skip

    def github(self, event: str, payload: dict[str, Any], secret: str | None = "") -> Any:
        body = wp.encode(payload)
        r = self.send("github", wp.github_headers(event, body, self.secret if secret == ""
                                                  else secret), body)  # fmt: skip
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def push(self, before: str, after: str, message: str, ref: str = "refs/heads/main") -> Any:
        return self.github("push", wp.github_push(self.up.url, ref, before, after, message))

    def results(self, data: Any) -> dict[str, str]:
        return {r["id"]: r["text"] for r in data["results"]}

    def build(self, service: str, build_id: str) -> Any:
        path = f"/v1/projects/{self.project}/services/{service}/build/{build_id}"
        return self.factory.ok("GET", path)

    def builds(self, service: str) -> list[Any]:
        path = f"/v1/projects/{self.project}/services/{service}/build"
        return list(self.factory.ok("GET", path)["builds"])


@pytest.fixture
def hooks(client: TestClient, factory: Factory, upstream: Upstream) -> Hooks:
    return Hooks(client, factory, upstream)


def test_secret_is_shown_once_and_rotation_invalidates_it(hooks: Hooks) -> None:
    shown = hooks.factory.ok("GET", f"/v1/projects/{hooks.project}/webhook")
    assert shown["configured"] is True and "secret" not in shown
    assert shown["urls"]["github"].endswith(f"/v1/webhooks/github/{hooks.project}")
    old = hooks.secret
    hooks.secret = hooks.factory.ok("POST", f"/v1/projects/{hooks.project}/webhook")["secret"]
    assert hooks.secret != old
    body = wp.encode(wp.github_push(hooks.up.url, "refs/heads/main", wp.ZERO, "a" * 40, "x"))
    assert hooks.send("github", wp.github_headers("push", body, old), body).status_code == 401
    # The secret is sealed: not in the database in clear.
    state = hooks.factory.client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        stored = session.scalars(select(ProjectWebhook.secret_enc)).all()
    assert stored and all(hooks.secret.encode() not in row for row in stored)


def test_push_to_main_builds_the_combined_service(hooks: Hooks) -> None:
    web = hooks.service("combined", "web")
    before = hooks.up.git("rev-parse", "HEAD")
    after = hooks.up.commit({"app.txt": "v2\n"}, "change the app")
    data = hooks.push(before, after, "change the app")
    assert data["event"] == "push" and data["after"] == after
    [result] = data["results"]
    assert result["outcome"] == "started" and result["text"] == f"started {result['buildId']}"
    build = hooks.build(web, result["buildId"])
    assert build["status"] == "QUEUED" and build["branch"] == "main"
    assert build["trigger"] == {"type": "webhook", "deliveryId": data["id"],
                                "provider": "github", "event": "push"}  # fmt: skip
    # An API-started build says so.
    api = hooks.factory.ok("POST", f"/v1/projects/{hooks.project}/services/{web}/build", json={})
    assert api["trigger"] == {"type": "api"}
    # A push to another branch does not build the combined service, and says why.
    other = hooks.up.commit({"app.txt": "v3\n"}, "feature work", branch="feature/x")
    data = hooks.push(wp.ZERO, other, "feature work", ref="refs/heads/feature/x")
    assert hooks.results(data) == {
        web: "skipped: branch feature/x is not the service's branch (main)"
    }


def test_only_ignored_paths_skip_and_net_diff_builds(hooks: Hooks) -> None:
    api = hooks.service("combined", "api",
                        buildConfiguration={"pathIgnoreRules": ["docs/**"]})  # fmt: skip
    start = hooks.up.git("rev-parse", "HEAD")
    docs = hooks.up.commit({"docs/readme.md": "more docs\n"}, "docs only")
    data = hooks.push(start, docs, "docs only")
    assert hooks.results(data) == {api: "skipped: only ignored paths changed: docs/** (1 changed)"}
    assert hooks.builds(api) == []
    # Two commits in one push: the first changes the app, the tip only docs. The net diff
    # (start..tip) touches a watched path: it builds, though the tip alone would not.
    app = hooks.up.commit({"app.txt": "v2\n"}, "app")
    tip = hooks.up.commit({"docs/readme.md": "even more docs\n"}, "docs again")
    data = hooks.push(docs, tip, "docs again")
    [result] = data["results"]
    assert result["outcome"] == "started", result
    assert hooks.build(api, result["buildId"])["sha"] == tip
    assert data["diff"] == f"{docs[:12]}..{tip[:12]}"
    assert app != tip


def test_allow_list(hooks: Hooks) -> None:
    svc = hooks.service("combined", "watch",
                        buildConfiguration={"pathIgnoreRules": ["src/**"], "isAllowList": True})  # fmt: skip
    start = hooks.up.git("rev-parse", "HEAD")
    tip = hooks.up.commit({"app.txt": "v9\n"}, "outside src")
    data = hooks.push(start, tip, "outside src")
    assert hooks.results(data) == {
        svc: "skipped: no changed path matches the allow list: src/** (1 changed)"
    }


def test_skip_ci_flag_on_the_head_commit(hooks: Hooks) -> None:
    svc = hooks.service("combined", "flags", buildConfiguration={"ciIgnoreFlagsEnabled": True})
    start = hooks.up.git("rev-parse", "HEAD")
    tip = hooks.up.commit({"app.txt": "v2\n"}, "tweak [skip ci]")
    data = hooks.push(start, tip, "tweak [skip ci]")
    assert hooks.results(data) == {svc: "skipped: commit message has [skip ci]"}
    assert hooks.builds(svc) == []


def test_disabled_ci_and_branch_restrictions(hooks: Hooks) -> None:
    off = hooks.service("combined", "off", disabledCI=True)
    builder = hooks.service("build", "builder", branch=None,
                            buildConfiguration={"branchRestrictions": ["main", "release/*"]})  # fmt: skip
    start = hooks.up.git("rev-parse", "HEAD")
    tip = hooks.up.commit({"app.txt": "v2\n"}, "feature", branch="feature/x")
    data = hooks.push(start, tip, "feature", ref="refs/heads/feature/x")
    assert hooks.results(data) == {
        off: "skipped: CI disabled for this service",
        builder: "skipped: branch feature/x matches no branchRestrictions (main, release/*)",
    }
    release = hooks.up.commit({"app.txt": "v3\n"}, "release", branch="release/1.2")
    data = hooks.push(tip, release, "release", ref="refs/heads/release/1.2")
    assert hooks.results(data)[builder].startswith("started ")


def test_pull_request_builds_the_build_service_at_the_head(hooks: Hooks) -> None:
    web = hooks.service("combined", "web")
    builder = hooks.service("build", "builder", branch=None,
                            buildConfiguration={"prRestrictions": ["feature/*"]})  # fmt: skip
    head = hooks.up.commit({"app.txt": "pr\n"}, "pr work", branch="feature/pr")
    hooks.up.set_ref("refs/pull/5/head", head)
    payload = wp.github_pull_request(hooks.up.url, "opened", 5, "feature/pr", head)
    data = hooks.github("pull_request", payload)
    results = hooks.results(data)
    assert (
        results[web]
        == "skipped: pull requests build only build services (this is a combined service)"
    )
    assert results[builder].startswith("started ")
    build = hooks.build(builder, results[builder].removeprefix("started "))
    assert build["pullRequestId"] == 5 and build["sha"] == head
    # closed does not build; recorded as ignored with why.
    closed = hooks.github("pull_request", wp.github_pull_request(hooks.up.url, "closed", 5,
                                                                 "feature/pr", head))  # fmt: skip
    assert closed["state"] == "ignored" and closed["results"] == []
    assert closed["note"] == "pull request action 'closed' does not build"


def test_bad_or_missing_signature_is_401_and_records_nothing(
    hooks: Hooks, client: TestClient
) -> None:
    web = hooks.service("combined", "web")
    before = hooks.up.git("rev-parse", "HEAD")
    after = hooks.up.commit({"app.txt": "v2\n"}, "x")
    body = wp.encode(wp.github_push(hooks.up.url, "refs/heads/main", before, after, "x"))
    for headers in (
        wp.github_headers("push", body, "wrong"),
        wp.github_headers("push", body, None),
    ):
        r = hooks.send("github", headers, body)
        assert r.status_code == 401 and r.json()["error"]["status"] == 401
    tampered = body.replace(b"refs/heads/main", b"refs/heads/evil")
    r = hooks.send("github", wp.github_headers("push", body, hooks.secret), tampered)
    assert r.status_code == 401
    assert hooks.builds(web) == []
    deliveries = hooks.factory.ok("GET", f"/v1/projects/{hooks.project}/webhook/deliveries")
    assert deliveries["deliveries"] == []
    metrics = client.get("/metrics").text
    assert (
        'shipyard_webhook_rejected_total{provider="github",reason="bad-signature"} 2.0' in metrics
    )
    assert 'shipyard_webhook_rejected_total{provider="github",reason="unsigned"} 1.0' in metrics
    # An unknown project answers like a project without a secret (no existence oracle).
    r = hooks.client.post("/v1/webhooks/github/no-such-project", content=body,
                          headers={"Authorization": "", **wp.github_headers("push", body, "x")})  # fmt: skip
    assert r.status_code == 401 and r.json()["error"]["message"] == REFUSED
    # GitLab and Gitea too.
    gl = wp.encode(wp.gitlab_push(hooks.up.url, "refs/heads/main", before, after, "x"))
    assert hooks.send("gitlab", wp.gitlab_headers("Push Hook", "nope"), gl).status_code == 401
    gt = wp.encode(wp.gitea_push(hooks.up.url, "refs/heads/main", before, after, "x"))
    assert hooks.send("gitea", wp.gitea_headers("push", gt, "nope"), gt).status_code == 401


def test_replayed_delivery_is_ignored(hooks: Hooks) -> None:
    web = hooks.service("combined", "web")
    before = hooks.up.git("rev-parse", "HEAD")
    after = hooks.up.commit({"app.txt": "v2\n"}, "x")
    body = wp.encode(wp.github_push(hooks.up.url, "refs/heads/main", before, after, "x"))
    headers = wp.github_headers("push", body, hooks.secret)
    first = hooks.send("github", headers, body).json()["data"]
    again = hooks.send("github", headers, body).json()["data"]
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["results"] == first["results"]
    assert len(hooks.builds(web)) == 1


def test_gitlab_and_gitea_push_and_merge_request(hooks: Hooks) -> None:
    web = hooks.service("combined", "web")
    builder = hooks.service("build", "builder", branch=None,
                            buildConfiguration={"prRestrictions": ["*"]})  # fmt: skip
    before = hooks.up.git("rev-parse", "HEAD")
    after = hooks.up.commit({"app.txt": "v2\n"}, "gitlab push")
    body = wp.encode(wp.gitlab_push(hooks.up.url, "refs/heads/main", before, after, "gitlab push"))
    r = hooks.send("gitlab", wp.gitlab_headers("Push Hook", hooks.secret), body)
    assert r.status_code == 200, r.text
    assert hooks.results(r.json()["data"])[web].startswith("started ")
    head = hooks.up.commit({"app.txt": "mr\n"}, "mr work", branch="topic")
    hooks.up.set_ref("refs/merge-requests/3/head", head)
    body = wp.encode(wp.gitlab_merge_request(hooks.up.url, "open", 3, "topic", head, "mr work"))
    r = hooks.send("gitlab", wp.gitlab_headers("Merge Request Hook", hooks.secret), body)
    data = r.json()["data"]
    assert data["pullRequestId"] == 3 and hooks.results(data)[builder].startswith("started ")
    # An MR "update" without new commits (a title edit) is not built.
    body = wp.encode(wp.gitlab_merge_request(hooks.up.url, "update", 3, "topic", head, "x"))
    r = hooks.send("gitlab", wp.gitlab_headers("Merge Request Hook", hooks.secret), body)
    assert r.json()["data"]["state"] == "ignored"
    # Gitea: push and a synchronized PR.
    tip = hooks.up.commit({"app.txt": "v3\n"}, "gitea push")
    body = wp.encode(wp.gitea_push(hooks.up.url, "refs/heads/main", after, tip, "gitea push"))
    r = hooks.send("gitea", wp.gitea_headers("push", body, hooks.secret), body)
    assert hooks.results(r.json()["data"])[web].startswith("started ")
    hooks.up.set_ref("refs/pull/4/head", head)
    body = wp.encode(wp.gitea_pull_request(hooks.up.url, "synchronized", 4, "topic", head))
    r = hooks.send("gitea", wp.gitea_headers("pull_request", body, hooks.secret), body)
    assert hooks.results(r.json()["data"])[builder].startswith("started ")


def test_ping_deliveries_list_and_pagination(hooks: Hooks) -> None:
    ping = {"zen": "Design for failure.", "hook_id": 1, "hook": {"type": "Repository"},
            "repository": wp._repo_github(hooks.up.url)}  # fmt: skip
    assert hooks.github("ping", ping)["ping"] == "pong"
    for n in range(3):
        hooks.push(wp.ZERO, f"{n:040d}", "unknown repo commit", ref="refs/tags/v1")
    path = f"/v1/projects/{hooks.project}/webhook/deliveries"
    page = hooks.client.get(path, params={"per_page": 2}).json()
    assert len(page["data"]["deliveries"]) == 2 and page["pagination"]["hasNextPage"] is True
    rest = hooks.client.get(path, params={"per_page": 2, "cursor": page["pagination"]["cursor"]})
    listed = page["data"]["deliveries"] + rest.json()["data"]["deliveries"]
    assert [d["event"] for d in listed] == ["push", "push", "push", "ping"]
    assert listed[0]["note"].startswith("no service or job of this project builds")


def test_body_bound_and_unreadable_payload(hooks: Hooks, settings: Settings) -> None:
    big = b"{" + b" " * (settings.webhook_max_body_bytes + 1) + b"}"
    assert (
        hooks.send("github", wp.github_headers("push", big, hooks.secret), big).status_code == 413
    )
    junk = b"not json"
    r = hooks.send("github", wp.github_headers("push", junk, hooks.secret), junk)
    assert r.status_code == 400 and "not JSON" in json.dumps(r.json())


def test_newer_push_supersedes_a_queued_build_when_asked(
    settings: Settings, upstream: Upstream, tmp_path: Path
) -> None:
    wanted = settings.model_copy(update={"webhook_supersede_queued": True})
    with TestClient(create_app(wanted, lambda *_: NullExecutor())) as c:
        assert wanted.admin_token is not None
        c.headers["Authorization"] = f"Bearer {wanted.admin_token.get_secret_value()}"
        hooks = Hooks(c, Factory(c), upstream)
        web = hooks.service("combined", "web")
        start = upstream.git("rev-parse", "HEAD")
        one = upstream.commit({"app.txt": "1\n"}, "one")
        first = hooks.results(hooks.push(start, one, "one"))[web].removeprefix("started ")
        two = upstream.commit({"app.txt": "2\n"}, "two")
        second = hooks.results(hooks.push(one, two, "two"))[web].removeprefix("started ")
        old = hooks.build(web, first)
        assert old["status"] == "ABORTED" and old["message"] == "Superseded by a newer push"
        assert hooks.build(web, second)["status"] == "QUEUED"
        # Deleting the project removes its deliveries and its mirrors.
        hooks.factory.ok("GET", f"/v1/projects/{hooks.project}/services/{web}/branches")
        mirrors = wanted.data_dir / "mirrors" / hooks.project
        assert mirrors.is_dir()
        hooks.factory.ok("DELETE", f"/v1/projects/{hooks.project}",
                         params={"delete_child_objects": "true"})  # fmt: skip
        assert not mirrors.exists()
