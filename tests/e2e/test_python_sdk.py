"""Northflank's official Python SDK (PyPI ``northflank`` 2.1.0), unchanged, against a live
Shipyard: every build endpoint of issue 10 item 5 that the SDK exposes answers well-formed
data (the SDK raises ``ApiCallError`` on any 4xx/5xx, so a 404/405 fails the test), and a
service edited through it builds with the edit.

The SDK takes the server as ``ApiClient(api_token=…, base_url=…)`` (or the environment
variables ``NORTHFLANK_API_TOKEN`` / ``NORTHFLANK_API_BASE_URL``). It has no REST build-log
call: build logs come through ``client.logs.tail_logs(is_build=True, …)``, the websocket
tail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow
PROJECT = "py-sdk"


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Any:
    from northflank import ApiClient

    return ApiClient(api_token=live.token, base_url=live.url, timeout=60)


def vcs(sample_app: SampleApp, branch: str | None = "main") -> dict[str, Any]:
    out: dict[str, Any] = {"projectUrl": sample_app.url, "projectType": "self-hosted"}
    if branch:
        out["projectBranch"] = branch
    return out


SETTINGS = {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}}
BASE = {"docker": {"dockerfileTarget": "base"}}


def tail(api: Any, kind: str, resource: str, build_id: str, **options: Any) -> list[str]:
    with api.logs.tail_logs(
        project_id=PROJECT, resource_id=resource, resource_type=kind, is_build=True,
        build_id=build_id, recv_timeout=120, **options,
    ) as lines:  # fmt: skip
        return [line.log for line in lines]


def wait(live: LiveServer, kind: str, slug: str, build_id: str) -> dict[str, Any]:
    return live.wait(f"/v1/projects/{PROJECT}/{kind}s/{slug}/build/{build_id}", timeout=300)


def test_every_build_endpoint(api: Any, live: LiveServer, sample_app: SampleApp) -> None:
    assert api.create.project(data={"name": PROJECT, "region": "europe-west"}).data["id"] == PROJECT
    p = PROJECT

    # create-or-update and patch of every workload kind
    combined = {"name": "web", "vcsData": vcs(sample_app), "buildSettings": SETTINGS}
    assert api.put.service.combined(project_id=p, data=combined).data["id"] == "web"
    again = api.put.service.combined(project_id=p, data={**combined, "description": "put twice"})
    assert again.data["description"] == "put twice"
    build_svc = {"name": "builder", "vcsData": vcs(sample_app, None), "buildSettings": SETTINGS}
    assert api.put.service.build(project_id=p, data=build_svc).data["id"] == "builder"
    patched = api.patch.service.build(project_id=p, service_id="builder", data={"description": "p"})
    assert patched.data["description"] == "p"
    job = {"name": "migrate", "vcsData": vcs(sample_app), "buildSettings": SETTINGS}
    assert api.put.job.manual(project_id=p, data=job).data["id"] == "migrate"
    patched = api.patch.job.manual(project_id=p, job_id="migrate", data={"description": "j"})
    assert patched.data["description"] == "j"
    cron = {**job, "name": "nightly", "settings": {"schedule": "0 0 * * *"}}
    assert api.put.job.cron(project_id=p, data=cron).data["id"] == "nightly"
    patched = api.patch.job.cron(project_id=p, job_id="nightly", data={"description": "c"})
    assert patched.data["description"] == "c"

    # start / get / list / abort builds, and their logs
    started = api.start.service.build(
        project_id=p, service_id="web", data={"sha": sample_app.main_sha, "overrides": BASE}
    ).data
    assert started["status"] in ("QUEUED", "PENDING") and started["concluded"] is False
    got = api.get.service.build(project_id=p, service_id="web", build_id=started["id"]).data
    assert got["id"] == started["id"]
    lines = tail(api, "service", "web", started["id"])  # follows until the build concludes
    assert any("==> building" in line for line in lines), lines
    done = wait(live, "service", "web", started["id"])
    assert done["status"] == "SUCCESS" and done["sha"] == sample_app.main_sha, done
    last = tail(api, "service", "web", started["id"], line_limit=3)
    assert last == lines[-3:], (last, lines[-3:])
    hits = tail(api, "service", "web", started["id"], line_limit=1000, text_includes="==> ")
    assert hits and all("==> " in line for line in hits)
    listed = api.get.service.builds(project_id=p, service_id="web").data["builds"]
    assert started["id"] in [b["id"] for b in listed]
    everything = api.get.service.builds.all(project_id=p, service_id="web", per_page=1).data
    assert started["id"] in [b["id"] for b in everything["builds"]]

    slow = api.start.service.build(
        project_id=p, service_id="builder",
        data={"branch": "main", "overrides": {"docker": {"dockerfileTarget": "slow"}}},
    ).data  # fmt: skip
    api.abort.service.build(project_id=p, service_id="builder", build_id=slow["id"])
    assert wait(live, "service", "builder", slow["id"])["status"] == "ABORTED"

    job_build = api.start.job.build(
        project_id=p, job_id="migrate", data={"sha": sample_app.main_sha, "overrides": BASE}
    ).data
    assert wait(live, "job", "migrate", job_build["id"])["status"] == "SUCCESS"
    got = api.get.job.build(project_id=p, job_id="migrate", build_id=job_build["id"]).data
    assert got["status"] == "SUCCESS"
    assert job_build["id"] in [
        b["id"] for b in api.get.job.builds(project_id=p, job_id="migrate").data["builds"]
    ]
    assert any("==> " in line for line in tail(api, "job", "migrate", job_build["id"]))
    assert api.get.job.runs(project_id=p, job_id="migrate").data == {"runs": []}

    # build arguments and their details
    args = {"buildArguments": {"GREETING": "ahoy"}}
    stored = {**args, "buildFiles": {}, "dockerSecretMounts": {}}
    api.update.service.build_arguments(project_id=p, service_id="web", data=args)
    assert api.get.service.build_arguments(project_id=p, service_id="web").data == stored
    details = api.get.service.build_argument_details(project_id=p, service_id="web").data
    assert details["buildArguments"]["GREETING"]["value"] == "ahoy", details
    api.update.job.build_arguments(project_id=p, job_id="migrate", data=args)
    assert api.get.job.build_arguments(project_id=p, job_id="migrate").data == stored
    api.get.job.build_argument_details(project_id=p, job_id="migrate")

    # refs of the repository
    for branches in (
        api.get.service.branches(project_id=p, service_id="web").data,
        api.get.job.branches(project_id=p, job_id="migrate").data,
    ):
        got_refs = {b["name"]: b["commit"]["sha"] for b in branches["branches"]}
        assert got_refs == {"main": sample_app.main_sha, "feature": sample_app.feature_sha}
    for prs in (
        api.get.service.pull_requests(project_id=p, service_id="builder").data,
        api.get.job.pull_requests(project_id=p, job_id="migrate").data,
    ):
        assert [(pr["id"], pr["sha"]) for pr in prs["pullRequests"]] == [(5, sample_app.pr_sha)]

    # build metrics, single and range
    single = api.get.service.build_metrics(project_id=p, service_id="web", build_id=done["id"])
    assert {"cpu", "memory"} <= set(single.data), single.data
    ranged = api.get.service.build_metrics(
        project_id=p, service_id="web", build_id=done["id"], query_type="range",
        start_time=datetime.now(UTC) - timedelta(hours=1),
        end_time=datetime.now(UTC) + timedelta(minutes=1),
    )  # fmt: skip
    assert {"cpu", "memory"} <= set(ranged.data), ranged.data
    job_metrics = api.get.job.build_metrics(project_id=p, job_id="migrate", build_id=got["id"])
    assert {"cpu", "memory"} <= set(job_metrics.data)

    # build options, build source, cache reset; then the next build uses the edit
    api.patch.service.combined(
        project_id=p, service_id="web",
        data={"buildSettings": {"dockerfile": {"dockerFilePath": "/sub/Dockerfile.custom",
                                               "dockerWorkDir": "/sub"}}},
    )  # fmt: skip
    edited = api.start.service.build(project_id=p, service_id="web", data={}).data
    done = wait(live, "service", "web", edited["id"])
    assert done["status"] == "SUCCESS", done
    assert any("sub-listing" in line for line in tail(api, "service", "web", edited["id"]))
    api.update.service.build_options(
        project_id=p, service_id="web",
        data={"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/",
                             "buildkit": {"useCache": True}},
              "dockerfileTarget": "base", "includeGitFolder": False},
    )  # fmt: skip
    api.update.service.build_source(
        project_id=p, service_id="web", data={**vcs(sample_app, "feature")}
    )
    api.update.job.build_options(
        project_id=p, job_id="migrate", data={"dockerfile": SETTINGS["dockerfile"]}
    )
    api.update.job.build_source(project_id=p, job_id="migrate", data={"projectBranch": "feature"})
    api.reset.service.build_cache(project_id=p, service_id="web")
    edited = api.start.service.build(project_id=p, service_id="web", data={}).data
    done = wait(live, "service", "web", edited["id"])
    assert done["status"] == "SUCCESS" and done["sha"] == sample_app.feature_sha, done
    assert done["branch"] == "feature"

    # deletes
    api.delete.job(project_id=p, job_id="nightly")
    api.delete.service(project_id=p, service_id="builder")
