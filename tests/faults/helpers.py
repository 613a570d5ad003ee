"""Shared pieces of the fault suite: services and builds on a live server, and what a
build may leave behind (processes, runc state, working containers, mounts, work dirs)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers.live import LiveServer, running_containers_under, sandbox_dir

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin",
}  # fmt: skip


def create_service(live: LiveServer, repo: str, name: str = "s") -> str:
    with live.client() as c:
        c.post("/v1/projects", json={"name": "p"})
        r = c.post(
            "/v1/projects/p/services/build", json={"name": name, "vcsData": {"projectUrl": repo}}
        )
        assert r.status_code == 200, r.text
    return f"/v1/projects/p/services/{name}"


def start_build(
    live: LiveServer,
    svc: str,
    *,
    target: str | None = None,
    sha: str | None = None,
    arg: str | None = None,
    dockerfile: str | None = None,
) -> str:
    body: dict[str, Any] = {"branch": "main", **({"sha": sha} if sha else {})}
    docker: dict[str, Any] = {}
    if target:
        docker["dockerfileTarget"] = target
    if dockerfile:
        docker["dockerfileContents"] = dockerfile
    overrides: dict[str, Any] = {}
    if docker:
        overrides["docker"] = docker
    if arg is not None:
        overrides["buildArguments"] = {"GREETING": arg}
    if overrides:
        body["overrides"] = overrides
    with live.client() as c:
        r = c.post(f"{svc}/build", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["id"])


def wait_for_status(
    live: LiveServer,
    svc: str,
    build: str,
    status: str,
    *,
    log_text: str | None = None,
    timeout: float = 90,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with live.client() as c:
        while True:
            data: dict[str, Any] = c.get(f"{svc}/build/{build}").json()["data"]
            if data["status"] == status and (
                log_text is None
                or c.get(
                    f"{svc}/build-logs", params={"buildId": build, "textIncludes": log_text}
                ).json()["data"]
            ):
                time.sleep(0.3)
                return data
            assert not data["concluded"], f"build ended before {status}: {data}"
            assert time.monotonic() < deadline, f"never reached {status}: {data}"
            time.sleep(0.1)


def store_containers(data: Path) -> list[str]:
    """Working containers in every project store of the server (containers/storage's own
    record, read as root: no buildah process needed)."""
    found: list[str] = []
    for record in sandbox_dir(data).glob("*/store/root/overlay-containers/containers.json"):
        try:
            entries = json.loads(record.read_text()) or []
        except (OSError, ValueError):
            continue
        found += [f"container:{e.get('id', '?')[:12]}" for e in entries]
    return found


def overlay_mounts(data: Path) -> list[str]:
    root = str(sandbox_dir(data))
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].startswith(root) and "/store/" in fields[4]:
            found.append(f"mount:{fields[4]}")
    return found


def work_dirs(data: Path) -> list[str]:
    return [f"workdir:{p.name}" for p in sandbox_dir(data).glob("*/work/*")]


def leftovers(data: Path, build: str | None = None) -> list[str]:
    """Everything of the server's builds still there (of one build: its processes only)."""
    if build is not None:
        return running_containers_under(data, build)
    return [
        *running_containers_under(data),
        *store_containers(data),
        *overlay_mounts(data),
        *work_dirs(data),
    ]


def hanging_repository(root: Path) -> tuple[str, str]:
    """A bare repository whose object store blocks every reader (its alternates file is a
    FIFO nobody writes): a build of it stays in CLONING with git running."""
    work, bare = root / "work", root / "repo.git"
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True, env=GIT_ENV)
    (work / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=work, check=True, env=GIT_ENV)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True, env=GIT_ENV)
    sha = (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, check=True, env=GIT_ENV, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    os.mkfifo(bare / "objects" / "info" / "alternates")
    return f"file://{bare}", sha


def git_processes_under(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (git upload-pack of a test repo)."""
    needle = str(path).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            named = needle in (proc / "cmdline").read_bytes()
            if named and "\nState:\tZ" not in (proc / "status").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_processes_under(path: Path) -> None:
    for pid in git_processes_under(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
