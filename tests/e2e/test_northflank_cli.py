"""Northflank's official CLI (npm @northflank/cli 0.9.24), unchanged, against a live Shipyard:
token login, create a project and a build service, start / list / get / abort builds, read
build logs and API errors, asserted on what the CLI prints.

CLI behaviour the test relies on (read from the CLI's code, checked against a live server):
- Contexts live in ``$HOME/.northflank/config.json`` as ``{"contexts": [...], "current": …,
  "lastUpdateCheck": …}``. ``contexts`` must be a list (``login`` otherwise fails with
  "Cannot read properties of undefined (reading 'find')"); ``lastUpdateCheck`` in epoch ms,
  less than a day old, skips the npm registry update check.
- ``login -n NAME -t TOKEN --host URL`` calls ``GET /v1/login`` with the Bearer token and
  keeps the context only on a 2xx. It exits 0 even when it fails: assert on its output.
- ``--output json`` prints exactly the response's ``data`` as JSON. On a list it follows
  ``pagination.cursor`` to the end (``get.…all()``); the default format instead asks
  "there are more rows, load?" when ``hasNextPage`` is true, which prompts. A missing
  ``--projectId``/``--serviceId``/``--buildId`` prompts too. With stdin closed a prompt ends
  the CLI with exit code 130, so every call here passes every id and ``--output json``.
- API errors go to stderr as "API request failed … (HTTP status code: N)", exit code 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = [pytest.mark.slow, pytest.mark.js]
NORTHFLANK = Path(__file__).resolve().parents[1] / "js" / "node_modules" / ".bin" / "northflank"
BUILD_ID = re.compile(r"^[a-z]+-[a-z]+-\d{4}$")
PROJECT, SERVICE = "cli-project", "cli-builder"


@dataclass
class Cli:
    home: Path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "NO_COLOR": "1"}
        return subprocess.run(
            [str(NORTHFLANK), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        """Runs a command with ``--output json``; it must succeed and print only JSON."""
        out = self.run(*args, "--output", "json")
        assert out.returncode == 0, (args, out.returncode, out.stdout, out.stderr)
        return json.loads(out.stdout)

    def config(self) -> dict[str, Any]:
        return json.loads((self.home / ".northflank" / "config.json").read_text())  # type: ignore[no-any-return]


def new_cli(home: Path) -> Cli:
    if not NORTHFLANK.exists():
        pytest.fail("tests/js/node_modules is needed (make test installs it: npm ci in tests/js)")
    (home / ".northflank").mkdir(parents=True)
    # The shape ApiClientFileContextProvider reads; a fresh lastUpdateCheck skips the npm check.
    config = {"contexts": [], "lastUpdateCheck": int(time.time() * 1000)}
    (home / ".northflank" / "config.json").write_text(json.dumps(config))
    return Cli(home)


@pytest.fixture(scope="module")
def cli(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A CLI whose current context is the live Shipyard, logged in with the admin token."""
    nf = new_cli(tmp_path_factory.mktemp("cli-home"))
    out = nf.run("login", "-n", "shipyard", f"--token={live.token}", "--host", live.url)
    assert out.returncode == 0, out.stderr
    assert "Successfully logged in" in out.stdout, (out.stdout, out.stderr)
    config = nf.config()
    assert config["current"] == "shipyard"
    assert config["contexts"] == [{"name": "shipyard", "token": live.token, "host": live.url}]
    return nf


@pytest.fixture(scope="module")
def service(cli: Cli, sample_app: SampleApp) -> tuple[str, str]:
    project = cli.json("create", "project", "--input", json.dumps({"name": PROJECT}))
    assert project["id"] == PROJECT and project["name"] == PROJECT
    body = {
        "name": SERVICE,
        "vcsData": {"projectUrl": sample_app.url, "projectType": "self-hosted"},
        "buildSettings": {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}},
    }
    created = cli.json(
        "create", "service", "build", "--projectId", PROJECT, "--input", json.dumps(body)
    )
    assert created["id"] == SERVICE
    return PROJECT, SERVICE


def ids(project: str, service: str) -> list[str]:
    return ["--projectId", project, "--serviceId", service]


def wait(cli: Cli, project: str, service: str, build_id: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        build = cli.json("get", "service", "build", *ids(project, service), "--buildId", build_id)
        if build["concluded"]:
            return build
        assert time.monotonic() < deadline, f"build did not conclude: {build}"
        time.sleep(0.5)


def test_login_with_an_unknown_token_keeps_no_context(live: LiveServer, tmp_path: Path) -> None:
    nf = new_cli(tmp_path / "home")
    out = nf.run("login", "-n", "bad", "-t", "not-a-token", "--host", live.url)
    # The CLI exits 0 here; the 401 of GET /v1/login shows as this message.
    assert "Failed to login with the provided token" in out.stderr, (out.stdout, out.stderr)
    assert nf.config()["contexts"] == []


def test_start_list_get_until_success(
    cli: Cli, service: tuple[str, str], sample_app: SampleApp, live: LiveServer
) -> None:
    project, name = service
    body = {"branch": "main", "overrides": {"docker": {"dockerfileTarget": "base"}}}
    started = cli.json(
        "start", "service", "build", *ids(project, name), "--input", json.dumps(body)
    )
    build_id = started["id"]
    assert BUILD_ID.match(build_id), started
    assert started["branch"] == "main"
    assert started["status"] in ("QUEUED", "PENDING") and started["concluded"] is False
    assert started["createdAt"].endswith("Z")

    listed = cli.json("get", "service", "builds", *ids(project, name))
    assert build_id in [b["id"] for b in listed["builds"]], listed

    got = cli.json("get", "service", "build", *ids(project, name), "--buildId", build_id)
    assert got["id"] == build_id and got["branch"] == "main"

    done = wait(cli, project, name, build_id)
    assert done["status"] == "SUCCESS", done
    assert done["success"] is True and done["message"] == "Image successfully built"
    assert done["sha"] == sample_app.main_sha
    assert done["registry"]["uri"].startswith(f"{live.registry}/{project}/{name}@sha256:")

    logs = cli.json(
        "get", "service", "build-logs", *ids(project, name), "--buildId", build_id,
        "--lineLimit", "10000",
    )  # fmt: skip
    assert any("==> building" in line["log"] for line in logs), logs
    assert any("==> success" in line["log"] for line in logs), logs


def test_list_follows_every_page(cli: Cli, service: tuple[str, str]) -> None:
    project, name = service
    body = {"branch": "feature", "overrides": {"docker": {"dockerfileTarget": "base"}}}
    started = [
        cli.json("start", "service", "build", *ids(project, name), "--input", json.dumps(body))
        for _ in range(2)
    ]
    everything = cli.json("get", "service", "builds", *ids(project, name))["builds"]
    paged = cli.json("get", "service", "builds", *ids(project, name), "--per_page", "1")["builds"]
    assert len(everything) >= 3
    assert [b["id"] for b in paged] == [b["id"] for b in everything]
    for build in started:
        assert wait(cli, project, name, build["id"])["status"] == "SUCCESS"


def test_abort(cli: Cli, service: tuple[str, str]) -> None:
    project, name = service
    body = {"branch": "main", "overrides": {"docker": {"dockerfileTarget": "slow"}}}
    started = cli.json(
        "start", "service", "build", *ids(project, name), "--input", json.dumps(body)
    )
    build_id = started["id"]
    aborted = cli.json("abort", "service", "build", *ids(project, name), "--buildId", build_id)
    assert aborted["id"] == build_id
    done = wait(cli, project, name, build_id, timeout=60)
    assert done["status"] == "ABORTED", done


def test_api_errors_fail_the_command(cli: Cli, service: tuple[str, str]) -> None:
    project, name = service
    bad = cli.run(
        "start", "service", "build", *ids(project, name), "--input", '{"sha":"abc"}',
        "--output", "json",
    )  # fmt: skip
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    assert "HTTP status code: 400" in bad.stderr and "sha" in bad.stderr, bad.stderr
    missing = cli.run(
        "get", "service", "build", *ids(project, name), "--buildId", "no-such-0000",
        "--output", "json",
    )  # fmt: skip
    assert missing.returncode == 1, (missing.stdout, missing.stderr)
    assert "HTTP status code: 404" in missing.stderr, missing.stderr


def test_edit_options_refs_and_cache(
    cli: Cli, service: tuple[str, str], sample_app: SampleApp
) -> None:
    """The rest of the build API through the CLI (issue 10 item 5): every call answers
    well-formed JSON (the CLI fails on a 404/405 or an empty body)."""
    project, name = service
    patched = cli.json(
        "patch", "service", "build", "--projectId", project, "--serviceId", name,
        "--input", json.dumps({"description": "patched by the CLI"}),
    )  # fmt: skip
    assert patched["id"] == name and patched["description"] == "patched by the CLI"
    options = {"dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}}
    cli.json(
        "update", "service", "build-options", *ids(project, name), "--input", json.dumps(options)
    )
    source = {"projectUrl": sample_app.url, "projectType": "self-hosted"}
    cli.json(
        "update", "service", "build-source", *ids(project, name), "--input", json.dumps(source)
    )
    branches = cli.json("get", "service", "branches", *ids(project, name))
    assert {b["name"] for b in branches["branches"]} == {"main", "feature"}
    prs = cli.json("get", "service", "pull-requests", *ids(project, name))
    assert [pr["id"] for pr in prs["pullRequests"]] == [5]
    # (CLI 0.9.24 has no "reset service build-cache"; the js-client test calls it.)
    latest = cli.json("get", "service", "builds", *ids(project, name))["builds"][0]["id"]
    metrics = cli.json("get", "service", "build-metrics", *ids(project, name), "--buildId", latest)
    assert {"cpu", "memory"} <= set(metrics), metrics


def test_job_runs_and_deletes(cli: Cli, sample_app: SampleApp) -> None:
    project = cli.json("create", "project", "--input", json.dumps({"name": "cli-scratch"}))["id"]
    body = {
        "name": "cli-job",
        "vcsData": {"projectUrl": sample_app.url, "projectType": "self-hosted",
                    "projectBranch": "main"},
    }  # fmt: skip
    job = cli.json("put", "job", "manual", "--projectId", project, "--input", json.dumps(body))
    assert job["id"] == "cli-job"
    runs = cli.json("get", "job", "runs", "--projectId", project, "--jobId", "cli-job")
    assert runs == {"runs": []}
    build = cli.json(
        "start", "job", "build", "--projectId", project, "--jobId", "cli-job", "--input", "{}"
    )
    logs = cli.json(
        "get", "job", "build-logs", "--projectId", project, "--jobId", "cli-job",
        "--buildId", build["id"], "--runId", "none",
    )  # fmt: skip
    assert isinstance(logs, list)
    cli.json("delete", "job", "--projectId", project, "--jobId", "cli-job", "--force")
    cli.json("delete", "project", "--projectId", project, "--force")  # empty now: no 409
    gone = cli.run("get", "project", "--projectId", project, "--output", "json")
    assert gone.returncode == 1 and "HTTP status code: 404" in gone.stderr, gone.stderr
