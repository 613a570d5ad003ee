"""A route-table sweep as a hostile tenant: every route of the app (walked from the app
itself, so a new route is swept without editing this file), called with a token of project
A holding every permission, aimed at project B's real ids. Project-scoped routes answer 403
or 404 — never 2xx, never 5xx — and the same status as for ids that do not exist (no
existence oracle); routes outside projects never show B. A second sweep sends garbage path
parameters, queries and bodies (as the admin, to reach the deepest code) and never gets a
5xx."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from tests.api.tenants import project_token
from tests.api.test_uploads import CONTEXT
from tests.conftest import SHA, Factory
from tests.helpers.pg import scratch_database

PARAM = re.compile(r"\{(\w+)\}")
# Routes any caller may get a 2xx from (their answers are checked not to name B).
OPEN = {
    ("GET", "/openapi.json"),
    ("GET", "/v1/login"),
    ("GET", "/v1/projects"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/registry/token"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/"),
    ("GET", "/docs"),
}
# Never swept with garbage as the admin: they act on the whole server for real.
NOT_WITH_ADMIN = {("POST", "/v1/gc")}


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, bool]]:
    """(method, path template, is websocket) of every route, through included routers."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            yield from walk(original.routes, prefix + (getattr(context, "prefix", "") or ""))
            continue
        path = prefix + getattr(route, "path", "")
        if type(route).__name__ == "Mount":
            continue  # static files
        methods = getattr(route, "methods", None)
        if methods is None:
            yield "WS", path, True
            continue
        for method in sorted(methods - {"HEAD"}):
            yield method, path, False


class World:
    def __init__(self, client: TestClient, factory: Factory) -> None:
        self.client = client
        self.a = factory.project("Alpha")
        self.b = factory.project("Bravo")
        self.ids: dict[str, dict[str, str]] = {}
        for p in (self.a, self.b):
            service = factory.workload(p, "services/combined", "web")
            factory.workload(p, "services/build", "builder", branch=None)
            job = factory.workload(p, "jobs/manual", "migrate")
            s_build = factory.ok("POST", f"/v1/projects/{p}/services/{service}/build", json={})[
                "id"
            ]
            j_build = factory.ok("POST", f"/v1/projects/{p}/jobs/{job}/build", json={})["id"]
            factory.ok("POST", f"/v1/projects/{p}/webhook")
            upload = client.post(f"/v1/projects/{p}/uploads", content=CONTEXT)
            assert upload.status_code == 200, upload.text
            self.ids[p] = {"service": service, "job": job, "sbuild": s_build, "jbuild": j_build}
        self.token = project_token(client, self.a)

    def fill(self, path: str, project: str, fake: bool = False) -> str:
        ids = self.ids[self.b]
        is_job = "/jobs/" in path
        values = {
            "projectId": project,
            "serviceId": ids["service"],
            "jobId": ids["job"],
            "entityId": ids["job"] if is_job else ids["service"],
            "workloadId": ids["job"] if is_job else ids["service"],
            "slug": ids["service"],
            "segment": "services",
            "buildId": ids["jbuild"] if is_job else ids["sbuild"],
            "provider": "github",
            "tokenId": "1",
            "endpointId": "1",
        }
        if fake:
            keep = ("provider", "segment", "tokenId", "endpointId")
            values = {k: (v if k in keep else "nope-" + v) for k, v in values.items()}
            values["projectId"] = "no-such-project"
        return PARAM.sub(lambda m: values.get(m.group(1), "x"), path)


BODIES: dict[str, Any] = {
    "/build": {"branch": "main", "sha": SHA},
    "/services/combined": {
        "name": "web",
        "vcsData": {"projectUrl": "https://example.com/r.git", "projectType": "self-hosted"},
    },
    "/notifications": {"url": "https://example.com/hook"},
    "/build-arguments": {"NAME": "value"},
    "/registry-pull-credentials": {"registry": "ghcr.io", "username": "u", "password": "p"},
}


def body_for(path: str) -> Any:
    for suffix, body in BODIES.items():
        if path.endswith(suffix):
            return body
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Both databases: PostgreSQL refuses what SQLite stores (a NUL in text: found here)."""
    if request.param == "sqlite":
        yield prepare(Settings(data_dir=tmp_path / "data", admin_token=None, secret_key=None))
        return
    with scratch_database("shipyard_sweep") as url:
        yield prepare(
            Settings(data_dir=tmp_path / "data", database_url=url, admin_token=None,
                     secret_key=None)
        )  # fmt: skip


@pytest.fixture
def world(client: TestClient, factory: Factory) -> World:
    return World(client, factory)


@pytest.fixture
def loose(settings: Settings) -> Iterator[TestClient]:
    """A client that answers 500s (instead of raising) so they can be asserted on."""
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


def call(client: TestClient, method: str, path: str, token: str | None, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}" if token else ""}
    if path.endswith("/uploads") and method == "POST":
        return client.request(method, path, content=CONTEXT, headers=headers)
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, path, json=body, headers=headers)
    return client.request(method, path, headers=headers)


def test_project_a_token_cannot_reach_project_b(world: World, loose: TestClient) -> None:
    # The same database: ``loose`` is another app on the same settings.
    client = loose
    b = world.b
    # What only B has (slugs like "web" are A's too).
    b_ids = {b, world.ids[b]["sbuild"], world.ids[b]["jbuild"]}
    swept, failures = 0, []
    for method, template, websocket in walk(client.app.routes):  # type: ignore[attr-defined]
        if websocket:
            continue  # below
        path = world.fill(template, b)
        if (method, template) in OPEN:
            r = call(client, method, path, world.token, body_for(template))
            assert r.status_code < 500, (method, path, r.text)
            for secret in b_ids:
                if secret in r.text:
                    failures.append(f"{method} {template}: names {secret} ({r.status_code})")
            swept += 1
            continue
        for body in ({}, body_for(template)):
            r = call(client, method, path, world.token, body)
            fake = call(client, method, world.fill(template, b, fake=True), world.token, body)
            expected = {401} if template.startswith("/v1/webhooks/") else {403, 404}
            if template.startswith("/ui/"):
                # A bearer token is no dashboard session: to the sign-in (the log's JSON
                # endpoints: 401).
                expected = {401} if template.endswith(("/log", "/log/search")) else {303}
            if r.status_code == 400 and fake.status_code == 400:
                continue  # the body is refused before any project is looked at
            if r.status_code not in expected:
                failures.append(f"{method} {template}: {r.status_code} {r.text[:200]}")
            elif r.status_code != fake.status_code:
                failures.append(f"{method} {template}: {r.status_code} for B, "
                                f"{fake.status_code} for no project (an oracle)")  # fmt: skip
            swept += 1
    assert swept > 80
    assert not failures, "\n".join(failures)


def test_dashboard_pages_of_b_with_a_session(world: World, settings: Settings) -> None:
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as browser:
        form = browser.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = browser.post("/signin", data={"token": world.token, "csrf": csrf.group(1)})
        assert signed.status_code == 303
        failures = []
        for method, template, _ in walk(app.routes):
            if not template.startswith("/ui/projects/") or method != "GET":
                continue
            r = browser.get(world.fill(template, world.b), params={"q": "x"})
            if r.status_code not in (403, 404):
                failures.append(f"{template}: {r.status_code}")
        # The dashboard's API proxy: the session's token against B.
        r = browser.get(f"/ui/api/v1/projects/{world.b}/services")
        if r.status_code not in (403, 404):
            failures.append(f"proxy: {r.status_code}")
    assert not failures, failures


def test_websocket_tails_of_b_refuse_a(world: World, client: TestClient) -> None:
    ids = world.ids[world.b]
    for path in (
        f"/v1/projects/{world.b}/services/{ids['service']}/build-logs?buildId={ids['sbuild']}",
        f"/v1/projects/{world.b}/jobs/{ids['job']}/build-logs?buildId={ids['jbuild']}",
    ):
        with client.websocket_connect(path) as ws:
            ws.send_json({"type": "init", "data": {"auth": {"apiToken": world.token}}})
            message = ws.receive_json()
            assert message["data"]["auth"] == "failed", message


GARBAGE_PARAMS = [
    "..", "%2e%2e%2f", "%00", "a" * 5000, "ü🚢", "-1", "99999999999999999999999999",
    "x' OR '1'='1", "$(id)", "%ff%fe", " ", "null", "a%00b",
]  # fmt: skip
GARBAGE_BODIES: list[Any] = [
    [], "text", 1e308, None, {"name": {"$gt": ""}}, {"branch": ["a"] * 1000},
    {"sha": "z" * 100_000}, json.loads("[" * 200 + "]" * 200), {"name": "a\u0000b"},
    {"branch": "main\u0000"}, {"url": "https://example.com/\u0000"},
    {"buildArguments": {"A" * 300: "v"}, "overrides": {"docker": {"buildArguments": 5}}},
]  # fmt: skip
GARBAGE_QUERIES = [
    {"per_page": "-5"}, {"page": "1e9"}, {"cursor": base64.b64encode(b'{"o": 1e400}').decode()},
    {"buildId": "\x00"}, {"startTime": "99999-99-99"}, {"lineLimit": "9" * 30},
    {"after": "9" * 40}, {"duration": "-1"}, {"scope": "repository:../../x:*"},
    {"regexIncludes": "(a+)+$" * 50}, {"textIncludes": "\x00"},
]  # fmt: skip


def test_garbage_never_5xx(world: World, loose: TestClient) -> None:
    failures = []
    for method, template, websocket in walk(loose.app.routes):  # type: ignore[attr-defined]
        if websocket or (method, template) in NOT_WITH_ADMIN:
            continue
        for value in GARBAGE_PARAMS:
            path = PARAM.sub(lambda _, v=value: v, template)  # type: ignore[misc]
            anonymous = call(loose, method, path, "", {})
            admin = loose.request(
                method, path, json={} if method in ("POST", "PUT", "PATCH") else None
            )
            for who, r in (("anonymous", anonymous), ("admin", admin)):
                if r.status_code >= 500:
                    failures.append(f"{method} {template} [{value[:20]!r}] {who}: {r.status_code}")
        real = world.fill(template, world.a)
        if method in ("POST", "PUT", "PATCH"):
            for body in GARBAGE_BODIES:
                r = loose.request(method, real, content=json.dumps(body),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
                if r.status_code >= 500:
                    failures.append(f"{method} {template} body {str(body)[:40]}: {r.status_code}")
            r = loose.request(method, real, content=b"\xff{not json",
                              headers={"Content-Type": "application/json"})  # fmt: skip
            if r.status_code >= 500:
                failures.append(f"{method} {template} invalid JSON: {r.status_code}")
        for query in GARBAGE_QUERIES:
            r = loose.request(method, real, params=query,
                              json={} if method in ("POST", "PUT", "PATCH") else None)  # fmt: skip
            if r.status_code >= 500:
                failures.append(f"{method} {template} ?{query}: {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)
