"""Projects, services and jobs: the build-relevant subset of their create bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_start_build_rules import assert_error


def test_project_create_list_get(client: TestClient) -> None:
    created = client.post(
        "/v1/projects", json={"name": "My App!", "description": "d", "color": "#fff"}
    ).json()["data"]
    assert created["id"] == "my-app" and created["name"] == "My App!" and created["color"] == "#fff"
    assert created["createdAt"].endswith("Z")
    assert client.get("/v1/projects/my-app").json()["data"]["id"] == "my-app"
    assert_error(client.post("/v1/projects", json={"name": "my app"}), 409)
    assert_error(client.post("/v1/projects", json={"name": "!!!"}), 400, "name")
    assert_error(client.post("/v1/projects", json={}), 400, "name")
    assert_error(client.get("/v1/projects/nope"), 404)


def test_project_pagination(client: TestClient) -> None:
    for n in range(5):
        client.post("/v1/projects", json={"name": f"p{n}"})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, object] = {"per_page": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/projects", params=params).json()
        seen += [p["id"] for p in body["data"]["projects"]]
        assert body["pagination"]["count"] == len(body["data"]["projects"])
        if not body["pagination"]["hasNextPage"]:
            assert "cursor" not in body["pagination"]
            break
        cursor = body["pagination"]["cursor"]
    assert sorted(seen) == [f"p{n}" for n in range(5)]
    assert_error(client.get("/v1/projects", params={"per_page": 101}), 400, "per_page")
    assert_error(client.get("/v1/projects", params={"cursor": "!!notbase64"}), 400, "cursor")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("services/combined", {"name": "x"}, "vcsData"),
        (
            "services/combined",
            {"name": "x", "vcsData": {"projectUrl": "file:///r"}},
            "projectBranch",
        ),
        ("jobs/manual", {"name": "x", "vcsData": {"projectUrl": "file:///r"}}, "projectBranch"),
        ("services/build", {"name": "x", "vcsData": {"projectUrl": "-uhelp"}}, "projectUrl"),
        ("services/build", {"name": "x", "vcsData": {"projectUrl": "ext::sh -c id"}}, "projectUrl"),
        (
            "services/build",
            {"name": "x", "vcsData": {"projectUrl": "file:///r", "projectBranch": "a..b"}},
            "projectBranch",
        ),
        ("services/build", {"vcsData": {"projectUrl": "file:///r"}}, "name"),
        (
            "services/build",
            {
                "name": "x",
                "vcsData": {"projectUrl": "file:///r"},
                "buildSettings": {"dockerfile": {"dockerFilePath": "Dockerfile"}},
            },
            "dockerFilePath",
        ),
        (
            "services/build",
            {"name": "x", "vcsData": {"projectUrl": "file:///r"}, "buildArguments": {"A B": "1"}},
            "buildArguments",
        ),
        (
            "services/build",
            {
                "name": "x",
                "vcsData": {"projectUrl": "file:///r"},
                "buildConfiguration": {"pathIgnoreRules": "docs/"},
            },
            "pathIgnoreRules",
        ),
        (  # a pathological wildcard rule: bounded at the API
            "services/build",
            {
                "name": "x",
                "vcsData": {"projectUrl": "file:///r"},
                "buildConfiguration": {"pathIgnoreRules": ["a*" * 17 + "b"]},
            },
            "buildConfiguration.pathIgnoreRules.0",
        ),
        (
            "services/build",
            {
                "name": "x",
                "vcsData": {"projectUrl": "file:///r"},
                "buildConfiguration": {"pathIgnoreRules": [f"d{i}/" for i in range(257)]},
            },
            "256 rules",
        ),
        *(  # commit ignore flags: a bounded list of bounded, non-blank strings
            (
                "services/build",
                {"name": "x", "vcsData": {"projectUrl": "file:///r"}, "buildConfiguration": c},
                field,
            )
            for c, field in (
                ({"ciIgnoreFlagsEnabled": "maybe"}, "ciIgnoreFlagsEnabled"),
                ({"ciIgnoreFlags": "[skip ci]"}, "ciIgnoreFlags"),
                ({"ciIgnoreFlags": [f"[f{i}]" for i in range(65)]}, "ciIgnoreFlags"),
                ({"ciIgnoreFlags": ["x" * 257]}, "buildConfiguration.ciIgnoreFlags.0"),
                ({"ciIgnoreFlags": ["[a]", ""]}, "buildConfiguration.ciIgnoreFlags.1"),
                ({"ciIgnoreFlags": [" \t "]}, "buildConfiguration.ciIgnoreFlags.0"),
                ({"ciIgnoreFlags": [1]}, "buildConfiguration.ciIgnoreFlags.0"),
            )
        ),
        *(
            (
                "services/build",
                {"name": "x", "vcsData": {"projectUrl": "file:///r"}, "buildSandbox": sandbox},
                "buildSandbox",
            )
            for sandbox in (
                {"network": "wide-open"},
                {"memoryMb": 1},
                {"pids": 0},
                {"cpus": -1},
                {"privileged": True},
            )
        ),
    ],
)
def test_workload_rules(client: TestClient, path: str, body: dict[str, object], field: str) -> None:
    client.post("/v1/projects", json={"name": "p"})
    assert_error(client.post(f"/v1/projects/p/{path}", json=body), 400, field)


def test_workloads_create_list_get(client: TestClient) -> None:
    client.post("/v1/projects", json={"name": "p"})
    body = {
        "name": "Web App",
        "billing": {"deploymentPlan": "nf-compute-20"},
        "vcsData": {
            "projectUrl": "https://example.com/r.git",
            "projectType": "self-hosted",
            "projectBranch": "main",
        },
        "buildSettings": {
            "dockerfile": {
                "dockerFilePath": "/docker/Dockerfile",
                "dockerWorkDir": "/app",
                "buildkit": {"useCache": False},
            }
        },
        "buildConfiguration": {"pathIgnoreRules": ["docs/"], "isAllowList": False},
        "buildArguments": {"SECRET_ARG": "hunter2-value"},
    }
    data = client.post("/v1/projects/p/services/combined", json=body).json()["data"]
    assert data["id"] == "web-app" and data["billing"] == {"deploymentPlan": "nf-compute-20"}
    assert data["vcsData"]["projectBranch"] == "main"
    assert "buildArguments" not in data  # secrets are not echoed
    assert_error(client.post("/v1/projects/p/services/combined", json=body), 409)
    assert_error(client.post("/v1/projects/nope/services/combined", json=body), 404)
    job = client.post("/v1/projects/p/jobs/manual", json={**body, "name": "Job"}).json()["data"]
    assert job["id"] == "job"
    services = client.get("/v1/projects/p/services").json()["data"]["services"]
    assert [s["id"] for s in services] == ["web-app"]
    assert [j["id"] for j in client.get("/v1/projects/p/jobs").json()["data"]["jobs"]] == ["job"]
    assert client.get("/v1/projects/p/services/web-app").json()["data"]["name"] == "Web App"
    assert_error(client.get("/v1/projects/p/services/job"), 404)


def test_repository_credentials_are_never_shown_or_stored_in_clear(client: TestClient) -> None:
    from shipyard.builds.service import repository_url
    from shipyard.store import workloads as workload_store

    client.post("/v1/projects", json={"name": "p"})
    url = "https://deploy:tok-3f9a7c1e@git.example.com/team/app.git"
    data = client.post(
        "/v1/projects/p/services/build", json={"name": "s", "vcsData": {"projectUrl": url}}
    ).json()["data"]
    assert data["vcsData"]["projectUrl"] == "https://git.example.com/team/app.git"
    assert "tok-3f9a7c1e" not in client.get("/v1/projects/p/services/s").text
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    db = b"".join(p.read_bytes() for p in state.settings.data_dir.glob("shipyard.db*"))
    assert b"tok-3f9a7c1e" not in db
    with state.sessions() as session:
        workload = workload_store.get(session, "p", "service", "s")
        assert repository_url(state.box, workload) == (url, "deploy:tok-3f9a7c1e")
