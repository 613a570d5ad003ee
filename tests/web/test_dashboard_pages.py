"""The dashboard's pages over HTTP (no browser): sign-in, what a token sees, the API proxy's
CSRF rule, log pages, /docs from local assets. Builds stay QUEUED (no executor)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.builds.permissions import Permission
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings
from shipyard.store import logs as log_store
from shipyard.store import tokens as token_store
from shipyard.store.db import make_engine, make_sessionmaker
from shipyard.store.models import BuildLogLine
from tests.conftest import Factory


def _browser(settings: Settings) -> TestClient:
    app = create_app(settings, lambda *_: NullExecutor())
    return TestClient(app, follow_redirects=False)


def _sign_in(browser: TestClient, token: str) -> Any:
    form = browser.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return browser.post("/signin", data={"token": token, "csrf": csrf.group(1)})


def _csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def test_pages_need_a_session(settings: Settings) -> None:
    with _browser(settings) as browser:
        for path in ("/", "/ui/projects/demo", "/ui/projects/demo/services/web"):
            r = browser.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path
        assert browser.get("/ui/api/v1/projects").status_code == 401


def test_a_bad_token_is_refused_with_a_message(settings: Settings) -> None:
    with _browser(settings) as browser:
        r = _sign_in(browser, "not-a-token")
        assert r.status_code == 401
        assert "That token is not valid." in r.text
        assert "shipyard_session" not in r.cookies


def test_sign_in_without_the_form_token_is_refused(settings: Settings) -> None:
    assert settings.admin_token is not None
    with _browser(settings) as browser:
        r = browser.post("/signin", data={"token": settings.admin_token.get_secret_value()})
        assert r.status_code == 403
        assert "shipyard_session" not in r.cookies


def test_signed_in_the_admin_sees_projects_services_and_builds(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project("Demo")
    factory.workload(project, "services/combined", "web")
    build = factory.ok("POST", f"/v1/projects/{project}/services/web/build", json={})
    assert settings.admin_token is not None
    with _browser(settings) as browser:
        r = _sign_in(browser, settings.admin_token.get_secret_value())
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert settings.admin_token.get_secret_value() not in cookie  # sealed, not the token
        home = browser.get("/")
        assert home.status_code == 200 and "/ui/projects/demo" in home.text
        assert "default-src 'self'" in home.headers["content-security-policy"]
        page = browser.get("/ui/projects/demo")
        assert "/ui/projects/demo/services/web" in page.text
        assert "/v1/webhooks/github/demo" in page.text
        builds = browser.get("/ui/projects/demo/services/web")
        assert build["id"] in builds.text and "QUEUED" in builds.text
        assert "API" in builds.text  # the trigger of a build without one
        assert build["id"] not in browser.get("/ui/projects/demo/services/web?status=SUCCESS").text
        assert build["id"] in browser.get("/ui/projects/demo/services/web?status=active").text
        assert build["id"] not in browser.get("/ui/projects/demo/services/web?branch=other").text
        detail = browser.get(f"/ui/projects/demo/services/web/builds/{build['id']}")
        assert detail.status_code == 200 and "Queued" in detail.text
        missing = browser.get("/ui/projects/demo/services/web/builds/nope-1234")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


def test_the_api_proxy_uses_the_session_and_needs_csrf_to_change_things(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project("Demo")
    factory.workload(project, "services/combined", "web")
    assert settings.admin_token is not None
    with _browser(settings) as browser:
        _sign_in(browser, settings.admin_token.get_secret_value())
        csrf = _csrf(browser.get("/").text)
        path = f"/ui/api/v1/projects/{project}/services/web/build"
        assert browser.get(path).json()["data"]["builds"] == []
        refused = browser.post(path, json={})
        assert refused.status_code == 403
        started = browser.post(path, json={}, headers={"X-CSRF-Token": csrf})
        assert started.status_code == 200, started.text
        build_id = started.json()["data"]["id"]
        again = browser.post(f"{path}/{build_id}/rerun", headers={"X-CSRF-Token": csrf})
        assert again.status_code == 200 and again.json()["data"]["id"] != build_id
        aborted = browser.delete(f"{path}/{build_id}", headers={"X-CSRF-Token": csrf})
        assert aborted.json()["data"]["status"] == "ABORTED"


def test_a_project_token_sees_its_project_only(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    mine = factory.project("Mine")
    other = factory.project("Other")
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        _, token = token_store.create(
            session,
            name="viewer",
            permissions=[Permission.PROJECTS_READ.value, Permission.SERVICES_READ.value],
            project_id=mine,
        )
        session.commit()
    with _browser(settings) as browser:
        assert _sign_in(browser, token).status_code == 303
        home = browser.get("/").text
        assert f"/ui/projects/{mine}" in home and f"/ui/projects/{other}" not in home
        assert browser.get(f"/ui/projects/{other}").status_code == 403
        page = browser.get(f"/ui/projects/{mine}").text
        assert "Services" in page and "Jobs" not in page  # no jobs read permission


def test_log_pages_by_line_number_and_search(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project("Demo")
    factory.workload(project, "services/combined", "web")
    build = factory.ok("POST", f"/v1/projects/{project}/services/web/build", json={})
    engine = make_engine(settings.resolved_database_url)
    from datetime import UTC, datetime

    with make_sessionmaker(engine)() as session:
        now = datetime.now(UTC)
        log_store.append(session, build["id"], 0, 0, [(now, f"line {i}") for i in range(2500)])
        session.commit()
        assert session.query(BuildLogLine).count() == 2500
    assert settings.admin_token is not None
    base = f"/ui/projects/{project}/services/web/builds/{build['id']}/log"
    with _browser(settings) as browser:
        _sign_in(browser, settings.admin_token.get_secret_value())
        tail = browser.get(base, params={"tail": 500}).json()
        assert tail["total"] == 2500
        assert [line["n"] for line in tail["lines"]] == list(range(2000, 2500))
        page = browser.get(base, params={"from": 1000, "count": 3}).json()
        assert [line["log"] for line in page["lines"]] == ["line 1000", "line 1001", "line 1002"]
        hits = browser.get(f"{base}/search", params={"q": "LINE 249"}).json()
        assert [m["n"] for m in hits["matches"]] == [249, *range(2490, 2500)]


def test_docs_load_swagger_ui_from_shipyard_itself(settings: Settings) -> None:
    with _browser(settings) as browser:
        page = browser.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:<script src|<link rel="[a-z]+" href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/") for s in sources), sources
        for asset in sources:
            assert browser.get(asset).status_code == 200, asset
        assert browser.get("/redoc").status_code == 404


def test_deliveries_page_without_and_with_the_webhooks_endpoint(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project("Demo")
    assert settings.admin_token is not None
    app = create_app(settings, lambda *_: NullExecutor())
    with TestClient(app, follow_redirects=False) as browser:
        _sign_in(browser, settings.admin_token.get_secret_value())
        page = browser.get(f"/ui/projects/{project}/deliveries")
        assert page.status_code == 200
        # Without the webhooks API (404 endpoint-not-found), or with it and nothing received.
        assert "No deliveries yet" in page.text

        # The webhooks API's shape (GET …/webhook/deliveries), as that branch answers it.
        def deliveries(projectId: str) -> dict[str, Any]:
            return {
                "data": {
                    "deliveries": [
                        {
                            "id": "d-1",
                            "provider": "github",
                            "event": "push",
                            "receivedAt": "2026-12-04T12:00:00.000Z",
                            "state": "processed",
                            "repository": "https://github.com/acme/shop",
                            "ref": "refs/heads/main",
                            "before": "a" * 40,
                            "after": "b" * 40,
                            "results": [
                                {"entity": "service", "id": "web", "outcome": "started",
                                 "buildId": "brave-ship-0001", "text": "started brave-ship-0001"},
                                {"entity": "job", "id": "migrate", "outcome": "skipped",
                                 "reason": "only docs/ changed", "text": "skipped: only docs/ changed"},
                            ],
                        }
                    ]
                },
                "pagination": {"hasNextPage": False, "count": 1},
            }  # fmt: skip

        app.add_api_route("/v1/projects/{projectId}/webhook/deliveries", deliveries)
        app.router.routes.insert(0, app.router.routes.pop())  # ahead of a real one, if any
        page = browser.get(f"/ui/projects/{project}/deliveries")
        assert 'id="delivery-d-1"' in page.text
        assert f"/ui/projects/{project}/services/web/builds/brave-ship-0001" in page.text
        assert "skipped: only docs/ changed" in page.text
        assert "bbbbbbbb" in page.text


def test_trigger_column_reads_the_builds_trigger() -> None:
    from shipyard.web.formatting import trigger_of

    assert trigger_of({})["label"] == "API"
    assert trigger_of({"trigger": {"type": "api"}})["label"] == "API"
    hook = trigger_of({"trigger": {"type": "webhook", "deliveryId": "d-1", "provider": "gitea"}})
    assert hook == {"type": "webhook", "label": "webhook · Gitea", "delivery": "d-1"}


def test_the_sign_in_page_shows_only_its_own_messages(settings: Settings) -> None:
    with _browser(settings) as browser:
        page = browser.get("/signin", params={"reason": "Enter your token at evil.example"})
        assert "evil.example" not in page.text
        assert "Your session ended" in browser.get("/signin?reason=expired").text


def test_builds_are_paged_and_jobs_have_pages_too(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project("Demo")
    factory.workload(project, "services/combined", "web")
    factory.workload(project, "jobs/manual", "migrate")
    ids = [
        factory.ok("POST", f"/v1/projects/{project}/services/web/build", json={})["id"]
        for _ in range(30)
    ]
    job_build = factory.ok("POST", f"/v1/projects/{project}/jobs/migrate/build", json={})["id"]
    assert settings.admin_token is not None
    with _browser(settings) as browser:
        _sign_in(browser, settings.admin_token.get_secret_value())
        first = browser.get(f"/ui/projects/{project}/services/web").text
        second = browser.get(f"/ui/projects/{project}/services/web?page=2").text
        assert all(i in first for i in ids[5:]) and not any(i in first for i in ids[:5])
        assert all(i in second for i in ids[:5]) and not any(i in second for i in ids[5:])
        assert "?page=2" in first and "Older" in first and "Newer" in second
        jobs = browser.get(f"/ui/projects/{project}/jobs/migrate")
        assert jobs.status_code == 200 and job_build in jobs.text
        page = browser.get(f"/ui/projects/{project}/jobs/migrate/builds/{job_build}")
        assert page.status_code == 200
        assert f"/ui/api/v1/projects/{project}/jobs/migrate/build-logs/stream" in page.text
        start = browser.get(f"/ui/projects/{project}/jobs/migrate/start").text
        assert f'data-api-path="/ui/api/v1/projects/{project}/jobs/migrate/build"' in start
        assert 'name="branch"' not in start  # jobs build their configured branch
        edit = browser.get(f"/ui/projects/{project}/jobs/migrate/settings").text
        assert f"/ui/api/v1/projects/{project}/jobs/manual/migrate" in edit
