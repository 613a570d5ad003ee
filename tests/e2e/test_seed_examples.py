"""Issue 10 acceptance: the seed pages' start-build examples, sent verbatim (only the sha
replaced by a real commit, ids by the test's own) through each official client — js-client,
the Northflank CLI (``--input '<json>'``) and the PyPI ``northflank`` SDK. The build file and
the secret mount hold exactly the decoded text (``data`` is base64 of the bytes),
``${NODE_ENV}`` templated from the build arguments when the build has one; GET
build-arguments returns what was sent. The build shows the file in the image and the mount
only as its SHA-256 (a RUN step prints it; the value is never printed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_builds import image_files
from tests.e2e.test_northflank_cli import new_cli
from tests.helpers.live import LiveServer
from tests.helpers.seed_examples import (
    JOB_OVERRIDES_EXAMPLE,
    JOB_PLAIN_EXAMPLE,
    NODE_ENV,
    SeedRepo,
    expected_files,
    make_seed_repo,
    seed_overrides,
    sha256,
    with_sha,
)

pytestmark = [pytest.mark.slow, pytest.mark.js]
JS_DIR = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="module")
def seed_repo(tmp_path_factory: pytest.TempPathFactory) -> SeedRepo:
    return make_seed_repo(tmp_path_factory.mktemp("seed-repo"))


def sent() -> dict[str, Any]:
    """What each client stores on its job: the example's files and mounts, and NODE_ENV."""
    overrides = seed_overrides()
    return {
        "buildArguments": {"NODE_ENV": NODE_ENV},
        "buildFiles": overrides["buildFiles"],
        "dockerSecretMounts": overrides["dockerSecretMounts"],
    }


def check_build(
    live: LiveServer, done: dict[str, Any], templated: bool, dest: Path, *, plain: bool = False
) -> None:
    assert done["status"] == "SUCCESS", done
    files = image_files(live, done["registry"]["uri"], dest)
    want = expected_files(templated)
    if plain:  # the current settings: the stored set, no ARGUMENT_1/2
        want["out/args"] = b"ARGUMENT_1= ARGUMENT_2=\n"
    for name, content in want.items():
        assert files[name] == content, (name, files.get(name))


def check_logs(lines: list[str], templated: bool) -> None:
    text = expected_files(templated)["out/fileName"].decode()
    assert f"mount-sha256={sha256(text)}" in "\n".join(lines)
    assert f"file-sha256={sha256(text)}" in "\n".join(lines)
    assert not any("example with a templated" in line for line in lines)  # never the value


def test_js_client(live: LiveServer, seed_repo: SeedRepo, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            "node",
            "seed_examples.mjs",
            live.url,
            live.token,
            seed_repo.url,
            with_sha(JOB_OVERRIDES_EXAMPLE, seed_repo.sha),
            with_sha(JOB_PLAIN_EXAMPLE, seed_repo.sha),
        ],
        cwd=JS_DIR,
        capture_output=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr.decode()
    results = json.loads(out.stdout)
    for key in ("job", "service", "update", "got", "startJob", "startJobPlain", "startService"):
        assert results[key].get("error") is None, (key, results[key])
    assert results["got"]["data"] == sent()
    assert results["startJob"]["data"]["sha"] == seed_repo.sha
    check_build(live, results["doneJob"]["data"], True, tmp_path / "job")
    check_build(live, results["doneJobPlain"]["data"], True, tmp_path / "plain", plain=True)
    check_build(live, results["doneService"]["data"], False, tmp_path / "svc")
    project = "js-seed"
    check_logs(
        live.logs(
            f"/v1/projects/{project}/jobs/seed-job/build-logs", results["doneJob"]["data"]["id"]
        ),
        True,
    )


def test_northflank_cli(live: LiveServer, seed_repo: SeedRepo, tmp_path: Path) -> None:
    cli = new_cli(tmp_path / "home")
    login = cli.run("login", "-n", "shipyard", f"--token={live.token}", "--host", live.url)
    assert "Successfully logged in" in login.stdout, (login.stdout, login.stderr)
    p = cli.json("create", "project", "--input", json.dumps({"name": "cli-seed"}))["id"]
    vcs = {"projectUrl": seed_repo.url, "projectType": "self-hosted", "projectBranch": "main"}
    settings = {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}}
    body = {"name": "seed-job", "vcsData": vcs, "buildSettings": settings}
    cli.json("create", "job", "manual", "--projectId", p, "--input", json.dumps(body))
    body = {**body, "name": "seed-web"}
    cli.json("create", "service", "combined", "--projectId", p, "--input", json.dumps(body))
    job = ["--projectId", p, "--jobId", "seed-job"]
    cli.json("update", "job", "build-arguments", *job, "--input", json.dumps(sent()))
    assert cli.json("get", "job", "build-arguments", *job) == sent()

    def run(kind: str, ids: list[str], example: str) -> dict[str, Any]:
        started = cli.json(
            "start", kind, "build", *ids, "--input", with_sha(example, seed_repo.sha)
        )
        return live.wait(f"/v1/projects/{p}/{kind}s/{ids[3]}/build/{started['id']}", timeout=300)

    done = run("job", job, JOB_OVERRIDES_EXAMPLE)
    check_build(live, done, True, tmp_path / "job")
    check_logs(live.logs(f"/v1/projects/{p}/jobs/seed-job/build-logs", done["id"]), True)
    check_build(live, run("job", job, JOB_PLAIN_EXAMPLE), True, tmp_path / "plain", plain=True)
    svc = ["--projectId", p, "--serviceId", "seed-web"]
    check_build(live, run("service", svc, JOB_OVERRIDES_EXAMPLE), False, tmp_path / "svc")


def test_python_sdk(live: LiveServer, seed_repo: SeedRepo, tmp_path: Path) -> None:
    from northflank import ApiClient

    api = ApiClient(api_token=live.token, base_url=live.url)
    p = api.create.project(data={"name": "py-seed", "region": "europe-west"}).data["id"]
    vcs = {"projectUrl": seed_repo.url, "projectType": "self-hosted", "projectBranch": "main"}
    settings = {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}}
    body: dict[str, Any] = {"name": "seed-job", "vcsData": vcs, "buildSettings": settings}
    api.create.job.manual(project_id=p, data=body)
    api.create.service.combined(project_id=p, data={**body, "name": "seed-web"})
    api.update.job.build_arguments(project_id=p, job_id="seed-job", data=sent())
    assert api.get.job.build_arguments(project_id=p, job_id="seed-job").data == sent()

    def example(text: str) -> Any:
        return json.loads(with_sha(text, seed_repo.sha))

    started = api.start.job.build(
        project_id=p, job_id="seed-job", data=example(JOB_OVERRIDES_EXAMPLE)
    )
    done = live.wait(f"/v1/projects/{p}/jobs/seed-job/build/{started.data['id']}", timeout=300)
    check_build(live, done, True, tmp_path / "job")
    check_logs(live.logs(f"/v1/projects/{p}/jobs/seed-job/build-logs", done["id"]), True)
    started = api.start.job.build(project_id=p, job_id="seed-job", data=example(JOB_PLAIN_EXAMPLE))
    done = live.wait(f"/v1/projects/{p}/jobs/seed-job/build/{started.data['id']}", timeout=300)
    check_build(live, done, True, tmp_path / "plain", plain=True)
    started = api.start.service.build(
        project_id=p, service_id="seed-web", data=example(JOB_OVERRIDES_EXAMPLE)
    )
    done = live.wait(f"/v1/projects/{p}/services/seed-web/build/{started.data['id']}", timeout=300)
    check_build(live, done, False, tmp_path / "svc")
