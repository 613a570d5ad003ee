"""The rest of the build API the official clients call (issue 10 item 5) and its contract
details (item 6): edit, delete, build options/source, cache reset, refs, metrics, runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.builds import service as build_service
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store import tokens as token_store
from shipyard.store import workloads as workload_store
from shipyard.store.models import Build, BuildLogLine, Workload
from tests.api.test_start_build_rules import assert_error
from tests.conftest import SHA


def svc(targets: dict[str, str], kind: str = "combined") -> str:
    return f"/v1/projects/{targets['project']}/services/{targets[kind]}"


def job(targets: dict[str, str]) -> str:
    return f"/v1/projects/{targets['project']}/jobs/{targets['job']}"


def row(client: TestClient, project: str, entity: str, slug: str) -> Workload:
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        workload = workload_store.get(session, project, entity, slug)
        session.expunge(workload)
        return workload


# --- PUT / PATCH ---------------------------------------------------------------------------


def test_put_creates_then_updates(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    body = {
        "name": "api",
        "vcsData": {"projectUrl": "file:///r", "projectBranch": "main"},
        "buildSettings": {"dockerfile": {"dockerFilePath": "/Dockerfile"}},
    }
    created = client.put(f"/v1/projects/{p}/services/combined", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["data"]["id"] == "api"
    body["buildSettings"] = {"dockerfile": {"dockerFilePath": "/app/Dockerfile"}}
    body["description"] = "now described"
    updated = client.put(f"/v1/projects/{p}/services/combined", json=body).json()["data"]
    assert updated["id"] == "api" and updated["description"] == "now described"
    assert updated["createdAt"] == created.json()["data"]["createdAt"]
    assert row(client, p, "service", "api").dockerfile_path == "/app/Dockerfile"
    # The same id as another kind: refused, not silently converted.
    assert_error(client.put(f"/v1/projects/{p}/services/build", json={**body, "name": "api"}), 409)
    job_body = {"name": "nightly", "vcsData": {"projectUrl": "file:///r", "projectBranch": "m"}}
    for kind in ("manual", "cron"):
        response = client.put(f"/v1/projects/{p}/jobs/{kind}", json={**job_body, "name": kind})
        assert response.status_code == 200, response.text


def test_patch_merges_and_next_build_reads_it(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    path = f"/v1/projects/{p}/services/combined/{targets['combined']}"
    response = client.patch(
        path,
        json={
            "buildSettings": {
                "dockerfile": {"dockerWorkDir": "/app", "buildkit": {"useCache": False}}
            },
            "buildConfiguration": {"pathIgnoreRules": ["*.md"], "dockerfileTarget": "prod"},
            "buildArguments": {"GREETING": "ahoy"},
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert "buildArguments" not in data  # secrets are never echoed
    assert data["buildConfiguration"]["dockerfileTarget"] == "prod"
    workload = row(client, p, "service", targets["combined"])
    assert workload.docker_work_dir == "/app" and workload.dockerfile_path == "/Dockerfile"
    assert workload.use_cache is False and workload.path_ignore_rules == ["*.md"]
    assert workload.vcs_branch == "main"  # untouched by the patch
    # A queued build reads the workload when it runs: the request it will load has the edit.
    build = client.post(f"{svc(targets)}/build", json={}).json()["data"]
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        loaded = build_service.load_request(
            state.box,
            workload_store.get(session, p, "service", targets["combined"]),
            build_store.get_any(session, build["id"]),
        )
    assert loaded.overrides.docker.work_dir == "/app"
    assert dict(loaded.overrides.build_arguments) == {"GREETING": "ahoy"}
    # Rules of the create body hold for the merged result; kinds must match the path.
    assert_error(client.patch(path, json={"vcsData": {"projectBranch": "a..b"}}), 400, "Branch")
    assert_error(client.patch(path, json={"vcsData": {"projectUrl": "-uhelp"}}), 400, "projectUrl")
    assert_error(
        client.patch(f"/v1/projects/{p}/services/build/{targets['combined']}", json={}), 409
    )
    assert_error(client.patch(f"/v1/projects/{p}/services/combined/nope", json={}), 404)
    jpath = f"/v1/projects/{p}/jobs/manual/{targets['job']}"
    assert client.patch(jpath, json={"description": "j"}).json()["data"]["description"] == "j"


def test_build_options_and_source(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    for base, entity, slug in (
        (svc(targets), "service", targets["combined"]),
        (job(targets), "job", targets["job"]),
    ):
        options = {
            "dockerfile": {"dockerFilePath": "/sub/Dockerfile", "buildkit": {"useCache": False}},
            "pathIgnoreRules": ["docs/"],
            "isAllowList": True,
            "ciIgnoreFlagsEnabled": True,
            "ciIgnoreFlags": ["[skip ci]"],
            "dockerfileTarget": "prod",
            "includeGitFolder": True,
            "fullGitClone": False,
        }
        response = client.post(f"{base}/build-options", json=options)
        assert response.status_code == 200 and response.json() == {"data": {}}, response.text
        workload = row(client, p, entity, slug)
        assert workload.dockerfile_path == "/sub/Dockerfile" and workload.use_cache is False
        assert workload.path_ignore_rules == ["docs/"] and workload.is_allow_list
        config = workload.spec["buildConfiguration"]
        assert config["dockerfileTarget"] == "prod" and config["ciIgnoreFlags"] == ["[skip ci]"]
        assert config["includeGitFolder"] is True
        source = {
            "projectUrl": "https://bot:s3cret@git.example.com/r.git",
            "projectType": "self-hosted",
            "projectBranch": "release",
        }
        response = client.post(f"{base}/build-source", json=source)
        assert response.status_code == 200 and response.json() == {"data": {}}, response.text
        workload = row(client, p, entity, slug)
        assert workload.vcs_branch == "release"
        assert workload.vcs_url == "https://git.example.com/r.git"
        assert workload.vcs_credentials_enc is not None  # credentials sealed, not in clear
        shown = client.get(base).json()["data"]
        assert "s3cret" not in str(shown)
        assert_error(client.post(f"{base}/build-options", json={"dockerfileTarget": "a b"}), 400)
        assert_error(client.post(f"{base}/build-source", json={"projectUrl": "ext::sh"}), 400)


# --- DELETE ----------------------------------------------------------------------------------


def test_delete_service_and_job_stop_builds_and_erase_rows(
    client: TestClient, targets: dict[str, str]
) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    queued = client.post(f"{svc(targets)}/build", json={}).json()["data"]["id"]
    running = client.post(f"{svc(targets)}/build", json={}).json()["data"]["id"]
    with state.sessions() as session:
        assert build_store.claim(session, running, "worker-1") == 1
        log_store.append(session, running, 1, 0, [(datetime.now(UTC), "hello")])
        session.commit()
    aborted: list[str] = []
    state.executor.abort = aborted.append  # the worker of a running build must be told
    response = client.delete(svc(targets))
    assert response.status_code == 200 and response.json() == {"data": {}}, response.text
    assert aborted == [running]
    with state.sessions() as session:
        assert session.get(Build, queued) is None and session.get(Build, running) is None
        assert session.query(BuildLogLine).filter_by(build_id=running).count() == 0
    assert_error(client.get(svc(targets)), 404)
    assert client.get(svc(targets)).json()["error"]["id"] == "service-not-found"
    assert client.delete(job(targets)).status_code == 200
    assert client.get(job(targets)).json()["error"]["id"] == "job-not-found"


def test_delete_project(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    released: list[str] = []
    client.app.state.shipyard.executor.release = released.append  # type: ignore[attr-defined]
    client.post(f"{svc(targets)}/build", json={})
    error = assert_error(client.delete(f"/v1/projects/{p}"), 409, "delete_child_objects")
    assert error["id"] == "project-not-empty"
    response = client.delete(f"/v1/projects/{p}", params={"delete_child_objects": "true"})
    assert response.status_code == 200 and response.json() == {"data": {}}, response.text
    assert released == [p]
    assert client.get(f"/v1/projects/{p}").json()["error"]["id"] == "project-not-found"
    empty = client.post("/v1/projects", json={"name": "Empty"}).json()["data"]["id"]
    assert client.delete(f"/v1/projects/{empty}").status_code == 200


# --- build cache -----------------------------------------------------------------------------


def test_reset_build_cache_turns_off_reuse(client: TestClient, targets: dict[str, str]) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    calls: list[tuple[str, int]] = []
    state.executor.reset_cache = lambda p, w: calls.append((p, w))
    build_id = client.post(f"{svc(targets)}/build", json={"sha": SHA}).json()["data"]["id"]
    with state.sessions() as session:
        session.query(Build).filter_by(id=build_id).update(
            {
                "status": "SUCCESS",
                "concluded": True,
                "registry_uri": "r/x@sha256:1",
                "reuse_key": "k",
            }
        )
        session.commit()
        workload_id = session.get(Build, build_id).workload_id  # type: ignore[union-attr]
        assert build_store.reusable(session, workload_id, SHA, "k") is not None
    response = client.delete(f"{svc(targets)}/build-cache")
    assert response.status_code == 200 and response.json() == {"data": {}}, response.text
    assert calls == [(targets["project"], workload_id)]
    with state.sessions() as session:
        assert build_store.reusable(session, workload_id, SHA, "k") is None


# --- branches and pull requests ------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "HOME": str(repo),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repos" / "app"
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "commit", "-q", "--allow-empty", "-m", "one")
    _git(path, "branch", "feature/x")
    head = _git(path, "rev-parse", "HEAD")
    _git(path, "update-ref", "refs/pull/7/head", head)
    _git(path, "update-ref", "refs/merge-requests/3/head", head)
    return path


@pytest.fixture
def local_client(tmp_path: Path, repo: Path) -> Iterator[TestClient]:
    settings = prepare(
        Settings(
            data_dir=tmp_path / "data",
            admin_token=None,
            secret_key=None,
            allowed_local_roots=[repo.parent],
        )
    )
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


def test_branches_and_pull_requests(local_client: TestClient, repo: Path) -> None:
    c = local_client
    c.post("/v1/projects", json={"name": "p"})
    vcs = {"projectUrl": f"file://{repo}", "projectBranch": "main"}
    c.post("/v1/projects/p/services/combined", json={"name": "web", "vcsData": vcs})
    c.post("/v1/projects/p/jobs/manual", json={"name": "j", "vcsData": vcs})
    head = _git(repo, "rev-parse", "HEAD")
    for base in ("/v1/projects/p/services/web", "/v1/projects/p/jobs/j"):
        body = c.get(f"{base}/branches").json()
        names = [b["name"] for b in body["data"]["branches"]]
        assert names == ["feature/x", "main"]
        assert body["data"]["branches"][1]["commit"]["sha"] == head
        assert body["pagination"] == {"hasNextPage": False, "count": 2}
        first = c.get(f"{base}/branches", params={"per_page": 1}).json()
        assert first["pagination"]["hasNextPage"] and first["pagination"]["cursor"]
        second = c.get(
            f"{base}/branches", params={"per_page": 1, "cursor": first["pagination"]["cursor"]}
        ).json()
        assert [b["name"] for b in second["data"]["branches"]] == ["main"]
        prs = c.get(f"{base}/pull-requests").json()["data"]["pullRequests"]
        assert [(pr["id"], pr["source"], pr["sha"]) for pr in prs] == [
            (7, "refs/pull/7/head", head),
            (3, "refs/merge-requests/3/head", head),
        ]
        assert prs[0]["destination"] == "main" and prs[0]["state"] == "OPEN"


def test_refs_of_a_refused_repository(client: TestClient, targets: dict[str, str]) -> None:
    # file:///nowhere and no SHIPYARD_ALLOWED_LOCAL_ROOTS: the fetch rule applies here too.
    error = assert_error(client.get(f"{svc(targets)}/branches"), 502, "SHIPYARD_ALLOWED_LOCAL")
    assert error["id"] == "upstream-error"


# --- metrics, runs ---------------------------------------------------------------------------


def test_build_metrics(client: TestClient, targets: dict[str, str]) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    assert client.get(f"{svc(targets)}/build-metrics").json()["error"]["id"] == "build-not-found"
    build_id = client.post(f"{svc(targets)}/build", json={}).json()["data"]["id"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with state.sessions() as session:
        session.query(Build).filter_by(id=build_id).update(
            {
                "status": "SUCCESS",
                "concluded": True,
                "created_at": t0,
                "started_at": t0 + timedelta(seconds=2),
                "concluded_at": t0 + timedelta(seconds=12),
            }
        )
        session.commit()
    single = client.get(f"{svc(targets)}/build-metrics", params={"buildId": build_id}).json()
    data = single["data"]
    assert set(data) == {"cpu", "memory", "buildDuration"}
    assert data["cpu"] == {"metricInfo": {"metricId": "cpu", "metricUnit": "vCPU"}, "values": []}
    assert data["buildDuration"]["values"][0]["data"] == [
        {"value": 10.0, "ts": "2026-01-01T00:00:12.000Z"}
    ]
    ranged = client.get(
        f"{job(targets)}/build-metrics", params={"queryType": "range", "metricTypes": "memory"}
    )
    assert ranged.json()["error"]["id"] == "build-not-found"
    ranged = client.get(
        f"{svc(targets)}/build-metrics",
        params={"queryType": "range", "metricTypes": ["memory", "cpu"], "duration": 60},
    ).json()["data"]
    assert set(ranged) == {"memory", "cpu"} and ranged["memory"]["values"] == []
    assert_error(
        client.get(f"{svc(targets)}/build-metrics", params={"metricTypes": "bogus"}),
        400,
        "metricTypes",
    )
    build = client.get(f"{svc(targets)}/build/{build_id}").json()["data"]
    assert build["startedAt"] == "2026-01-01T00:00:02.000Z"
    assert build["durations"] == {"queued": 2.0, "running": 10.0, "total": 12.0}


def test_job_runs_are_an_empty_list(client: TestClient, targets: dict[str, str]) -> None:
    body = client.get(f"{job(targets)}/runs").json()
    assert body == {"data": {"runs": []}, "pagination": {"hasNextPage": False, "count": 0}}
    assert client.get(f"/v1/projects/{targets['project']}/jobs/nope/runs").status_code == 404


# --- start without body, slugs, permissions, logs ------------------------------------------


def test_start_build_without_body(client: TestClient, targets: dict[str, str]) -> None:
    for path in (f"{svc(targets)}/build", f"{job(targets)}/build"):
        response = client.post(path, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == "QUEUED"
    assert_error(client.post(f"{svc(targets, 'build')}/build"), 400, "branch")


def test_error_slugs(client: TestClient, targets: dict[str, str]) -> None:
    assert client.get("/v1/projects/nope").json()["error"]["id"] == "project-not-found"
    assert client.get(f"{svc(targets)}/build/nope").json()["error"]["id"] == "build-not-found"
    assert client.get("/v1/nothing").json()["error"]["id"] == "endpoint-not-found"
    assert client.post(f"{svc(targets)}/build", json={"sha": "x"}).json()["error"]["id"] == (
        "invalid-request"
    )
    bare = client.get("/v1/projects", headers={"Authorization": ""}).json()
    assert bare["error"]["id"] == "unauthenticated"


def _token(client: TestClient, permissions: list[str]) -> dict[str, str]:
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        _, token = token_store.create(session, name="t", permissions=permissions, project_id=None)
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_permission_names_of_both_client_generations(
    client: TestClient, targets: dict[str, str]
) -> None:
    sdk = _token(
        client, ["Project > Services > General > Update", "Project > Jobs > General > Update"]
    )
    assert client.post(f"{svc(targets)}/build", json={}, headers=sdk).status_code == 200
    job_build = client.post(f"{job(targets)}/build", json={}, headers=sdk).json()["data"]["id"]
    assert client.get(f"{job(targets)}/build/{job_build}", headers=sdk).status_code == 200
    js = _token(client, ["Project > Jobs > Deployment > Deploy Build"])
    assert client.get(f"{job(targets)}/build/{job_build}", headers=js).status_code == 200
    logs = _token(client, ["Project > Jobs > Deployment > View Instance Logs"])
    assert client.get(f"{job(targets)}/build-logs", headers=logs).status_code == 200
    error = assert_error(client.delete(job(targets), headers=js), 403, "Delete")
    assert error["id"] == "forbidden"
    reader = _token(client, ["Project > Services > General > Read"])
    error = assert_error(client.post(f"{svc(targets)}/build", json={}, headers=reader), 403)
    assert error["details"]["alternatives"] == ["Project > Services > General > Update"]


def test_log_search_covers_the_whole_log(client: TestClient, targets: dict[str, str]) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    build_id = client.post(f"{svc(targets)}/build", json={}).json()["data"]["id"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [(t0 + timedelta(milliseconds=i), f"line {i}") for i in range(12_000)]
    lines.append((t0 + timedelta(seconds=20), "needle at the end"))
    with state.sessions() as session:
        log_store.append(session, build_id, 1, 0, lines)
        session.commit()
    base = f"{svc(targets)}/build-logs"
    found = client.get(base, params={"buildId": build_id, "textIncludes": "needle"}).json()
    assert [x["log"] for x in found["data"]] == ["needle at the end"]
    window = client.get(
        base, params={"startTime": "2026-01-01T00:00:00Z", "duration": 1, "lineLimit": 5}
    ).json()["data"]
    assert [x["log"] for x in window] == [f"line {i}" for i in range(5)]
    assert_error(
        client.get(
            base,
            params={
                "startTime": "2026-01-01T00:00:00Z",
                "endTime": "2026-01-01T00:01:00Z",
                "duration": 5,
            },
        ),
        400,
        "duration",
    )
    assert_error(client.get(base, params={"lineLimit": 10_001}), 400, "lineLimit")
    assert_error(client.get(base, params={"lineLimit": 0}), 400, "lineLimit")


def test_optional_strings_are_omitted(client: TestClient, targets: dict[str, str]) -> None:
    data: dict[str, Any] = client.post(f"{svc(targets)}/build", json={}).json()["data"]
    assert "message" not in data and "sha" not in data and "startedAt" not in data
    assert data["branch"] == "main" and "durations" in data
    assert "description" not in client.get(svc(targets)).json()["data"]
    assert "description" not in client.get(f"/v1/projects/{targets['project']}").json()["data"]
