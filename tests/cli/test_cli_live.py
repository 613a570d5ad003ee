"""The ``shipyard`` CLI against a live server, as a user runs it (a child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SECRET_VALUE, SampleApp

pytestmark = pytest.mark.slow
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def cli(
    live: LiveServer,
    *args: str,
    home: Path | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SHIPYARD_URL": live.url,
        "SHIPYARD_TOKEN": live.token,
        "COLUMNS": "200",
        **(env or {}),
    }
    if home is not None:
        environment.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        environment.pop("SHIPYARD_URL")
        environment.pop("SHIPYARD_TOKEN")
    done = subprocess.run(
        [SHIPYARD, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def service(live: LiveServer, sample_app: SampleApp) -> tuple[str, str]:
    cli(live, "create", "project", "--name", "CLI Demo")
    out = cli(
        live,
        "create",
        "service",
        "-p",
        "cli-demo",
        "--name",
        "app",
        "--kind",
        "build",
        "--repo",
        sample_app.url,
        "--build-arg",
        "GREETING=cli",
        "-o",
        "json",
    )
    assert json.loads(out.stdout)["id"] == "app"
    return "cli-demo", "app"


def test_start_follow_success(
    live: LiveServer, service: tuple[str, str], sample_app: SampleApp, tmp_path: Path
) -> None:
    project, svc = service
    secret = tmp_path / "token.txt"
    secret.write_text(SECRET_VALUE)
    done = cli(live, "start", "service", "build", "-p", project, "-s", svc, "--branch", "main", "--target", "final",
               "--secret-mount", f"token=@{secret}", "--build-file", "/config/cli.txt=from-cli", "--follow")  # fmt: skip
    assert "==> building" in done.stdout and "==> uploading" in done.stdout
    assert SECRET_VALUE not in done.stdout + done.stderr
    assert "SUCCESS" in done.stderr and f"{live.registry}/{project}/{svc}@sha256:" in done.stderr


def test_json_output_get_list_logs(
    live: LiveServer, service: tuple[str, str], sample_app: SampleApp
) -> None:
    project, svc = service
    started = json.loads(
        cli(
            live,
            "start",
            "service",
            "build",
            "-p",
            project,
            "-s",
            svc,
            "--input",
            '{"pullRequestId": 5, "overrides": {"docker": {"dockerfileTarget": "base"}}}',
            "-o",
            "json",
        ).stdout
    )
    assert started["status"] == "QUEUED" and started["pullRequestId"] == 5
    done = cli(
        live,
        "logs",
        "build",
        "-p",
        project,
        "-s",
        svc,
        "-b",
        started["id"],
        "--follow",
        "-o",
        "json",
    )
    records = [
        json.loads(line) for line in done.stdout.splitlines()
    ]  # NDJSON: lines, then the build
    assert any(r.get("log") == "==> building" for r in records[:-1])
    assert records[-1]["id"] == started["id"] and records[-1]["status"] == "SUCCESS"
    got = json.loads(
        cli(
            live,
            "get",
            "service",
            "build",
            "-p",
            project,
            "-s",
            svc,
            "-b",
            started["id"],
            "-o",
            "json",
        ).stdout
    )
    assert got["status"] == "SUCCESS" and got["sha"] == sample_app.pr_sha
    listed = json.loads(
        cli(live, "list", "service", "builds", "-p", project, "-s", svc, "-o", "json").stdout
    )
    assert started["id"] in [b["id"] for b in listed]
    text = cli(live, "list", "service", "builds", "-p", project, "-s", svc).stdout
    assert started["id"] in text and "SUCCESS" in text
    lines = cli(live, "logs", "build", "-p", project, "-s", svc, "-b", started["id"]).stdout
    assert "==> success" in lines


def test_failure_exits_non_zero(live: LiveServer, service: tuple[str, str]) -> None:
    project, svc = service
    done = cli(
        live,
        "start",
        "service",
        "build",
        "-p",
        project,
        "-s",
        svc,
        "--branch",
        "main",
        "--dockerfile",
        "/nope/Dockerfile",
        "--follow",
        check=False,
    )
    assert done.returncode == 1 and "Dockerfile not found at /nope/Dockerfile" in done.stderr


def test_abort(live: LiveServer, service: tuple[str, str]) -> None:
    project, svc = service
    started = json.loads(
        cli(
            live,
            "start",
            "service",
            "build",
            "-p",
            project,
            "-s",
            svc,
            "--branch",
            "main",
            "--target",
            "slow",
            "-o",
            "json",
        ).stdout
    )
    aborted = json.loads(
        cli(
            live,
            "abort",
            "service",
            "build",
            "-p",
            project,
            "-s",
            svc,
            "-b",
            started["id"],
            "-o",
            "json",
        ).stdout
    )
    assert aborted["id"] == started["id"]
    final = cli(
        live,
        "logs",
        "build",
        "-p",
        project,
        "-s",
        svc,
        "-b",
        started["id"],
        "--follow",
        check=False,
    )
    assert final.returncode == 1 and "ABORTED" in final.stderr


def test_api_errors_are_clear(live: LiveServer, service: tuple[str, str]) -> None:
    project, svc = service
    done = cli(
        live, "start", "service", "build", "-p", project, "-s", svc, "--sha", "abc", check=False
    )
    assert done.returncode == 1 and "HTTP 400" in done.stderr and "sha" in done.stderr
    done = cli(
        live,
        "get",
        "service",
        "build",
        "-p",
        project,
        "-s",
        svc,
        "-b",
        "nope-nope-0000",
        check=False,
    )
    assert done.returncode == 1 and "HTTP 404" in done.stderr


def test_login_saves_config(live: LiveServer, tmp_path: Path) -> None:
    bad = cli(live, "login", "--url", live.url, "--token", "wrong", home=tmp_path, check=False)
    assert bad.returncode == 1 and "refused" in bad.stderr
    cli(live, "login", "--url", live.url, "--token", live.token, home=tmp_path)
    saved = tmp_path / ".config" / "shipyard" / "config.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    listed = cli(
        live,
        "list",
        "service",
        "builds",
        "-p",
        "cli-demo",
        "-s",
        "app",
        "-o",
        "json",
        home=tmp_path,
    )
    assert isinstance(json.loads(listed.stdout), list)
