"""A fresh worker (a buildah store that never built the service) starts from the service's
registry cache: unchanged steps report ``Using cache``, changed files, build files, secret
values and build arguments are rebuilt, and a project never reads another project's cache.

The fresh worker is modelled by emptying the project's store between builds, as a new
worker's empty data dir has it; the database and the registry are the same."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.pipeline.builder import unmount_under
from shipyard.sandbox.layout import UserDirs
from shipyard.sandbox.sandbox import empty_store
from shipyard.sandbox.users import user_name
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import (
    LiveServer,
    instance_id,
    remove_sandbox,
    sandbox_dir,
    seed_base_image,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
COPY early.txt /early.txt
RUN cat /early.txt > /early.out
COPY late.txt /late.txt
RUN cat /late.txt > /late.out
COPY config.txt /config.txt
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /tok.sum
ARG GREETING=hi
LABEL greeting=$GREETING
RUN echo $GREETING > /greeting
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with the registry cache on, as scale-out workers have it (the local
    executor's default is off: one store, never a fresh worker)."""
    data_dir = tmp_path_factory.mktemp("shipyard") / "data"
    store = seed_base_image(data_dir)
    proc, server = start_server(data_dir, SHIPYARD_BUILD_CACHE_REGISTRY="true")
    try:
        yield server
    finally:
        stop_server(proc)
        unmount_under(store.root)
        remove_sandbox(data_dir)


def build(live: LiveServer, svc: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    with live.client() as c:
        build_id = c.post(f"{svc}/build", json=body).json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}")
    logs = live.logs(f"{svc}/build-logs", build_id)
    assert done["status"] == "SUCCESS", logs[-15:]
    return done, logs


def image_config(live: LiveServer, ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{ref}"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    config: dict[str, Any] = json.loads(out)["config"]
    return config


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    for args in (["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=ENV, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


def make_repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=ENV, check=True)
    return repo, commit(repo, {"Dockerfile": DOCKERFILE, "early.txt": "early 1\n",
                               "late.txt": "late 1\n"})  # fmt: skip


def image_files(live: LiveServer, ref: str, tmp: Path) -> dict[str, bytes]:
    """Every regular file of the image at ``ref``, as its layers leave it."""
    out = tmp / f"image-{hashlib.sha256(ref.encode()).hexdigest()[:12]}"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--authfile", str(live.authfile),
                    f"docker://{ref}", f"dir:{out}"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        blob = (out / layer["digest"].split(":", 1)[1]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files["/" + member.name.lstrip("./")] = extracted.read()
    return files


def wipe_store(live: LiveServer, project: str) -> None:
    """The project's store as a new worker has it: empty (no build of it is running)."""
    name = user_name(instance_id(live.data_dir), project)
    empty_store(UserDirs(sandbox_dir(live.data_dir) / name))


def body(sha: str, config: str, token: str, args: dict[str, str] | None = None) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "buildFiles": {"/config.txt": {"data": b64(config), "encoding": "utf-8"}},
        "dockerSecretMounts": {"tok": {"data": b64(token), "encoding": "utf-8"}},
    }
    if args:
        overrides["buildArguments"] = args
    return {"sha": sha, "branch": "main", "overrides": overrides}


def cache_hits(logs: list[str]) -> list[str]:
    return [line for line in logs if "Using cache" in line]


def pulled(logs: list[str]) -> list[str]:
    return [line for line in logs if "Cache pulled from remote" in line]


def create(live: LiveServer, project: str, repo: Path) -> str:
    with live.client() as c:
        c.post("/v1/projects", json={"name": project}).raise_for_status()
        c.post(f"/v1/projects/{project}/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}}
               ).raise_for_status()  # fmt: skip
    return f"/v1/projects/{project}/services/s"


def sha256(text: str) -> bytes:
    return (hashlib.sha256(text.encode()).hexdigest() + "\n").encode()


def test_a_fresh_worker_starts_from_the_registry_cache_and_never_gets_stale_layers(
    live: LiveServer, tmp_path: Path
) -> None:
    repo, first_sha = make_repo(tmp_path)
    svc = create(live, "fresh-a", repo)
    _, logs = build(live, svc, body(first_sha, "config 1\n", "token 1"))
    assert not pulled(logs)
    assert any("Pushing cache" in line and "/fresh-a/s/cache:" in line for line in logs), logs

    # A new commit (so no earlier image is reused) on a worker whose store is empty.
    wipe_store(live, "fresh-a")
    second_sha = commit(repo, {"late.txt": "late 2\n"})
    fresh, logs = build(live, svc, body(second_sha, "config 1\n", "token 1"))
    assert any("Layer cache: this worker has built no image of the service" in line
               and "/fresh-a/s/cache" in line for line in logs), logs[:30]  # fmt: skip
    # The base's key LABEL is absent (no argument given): COPY early + RUN early come from
    # the registry; from the changed late.txt on everything is built anew.
    assert len(pulled(logs)) >= 2 and len(cache_hits(logs)) >= 2, logs
    files = image_files(live, fresh["registry"]["uri"], tmp_path)
    assert files["/early.out"] == b"early 1\n" and files["/late.out"] == b"late 2\n"
    assert files["/config.txt"] == b"config 1\n" and files["/tok.sum"] == sha256("token 1")
    assert image_config(live, fresh["registry"]["uri"])["Labels"]["greeting"] == "hi"

    # A changed build file and a changed secret value on a fresh worker: the steps before
    # them still come from the registry, theirs are rebuilt.
    wipe_store(live, "fresh-a")
    changed, logs = build(live, svc, body(second_sha, "config 2\n", "token 2"))
    assert len(pulled(logs)) >= 4, logs  # COPY/RUN early, COPY/RUN late
    files = image_files(live, changed["registry"]["uri"], tmp_path)
    assert files["/late.out"] == b"late 2\n" and files["/config.txt"] == b"config 2\n"
    assert files["/tok.sum"] == sha256("token 2")

    # A changed build argument (used by LABEL only after its ARG, buildah #5501) on a fresh
    # worker: nothing stale from the registry.
    wipe_store(live, "fresh-a")
    ahoy, logs = build(live, svc, body(second_sha, "config 2\n", "token 2", {"GREETING": "ahoy"}))
    assert image_config(live, ahoy["registry"]["uri"])["Labels"]["greeting"] == "ahoy"
    files = image_files(live, ahoy["registry"]["uri"], tmp_path)
    assert files["/greeting"] == b"ahoy\n" and files["/config.txt"] == b"config 2\n"
    assert files["/tok.sum"] == sha256("token 2")

    # Back to the default value on yet another fresh worker: the first image's label again.
    wipe_store(live, "fresh-a")
    back, logs = build(live, svc, body(second_sha, "config 2\n", "token 2", {"OTHER": "1"}))
    assert image_config(live, back["registry"]["uri"])["Labels"]["greeting"] == "hi"
    assert image_files(live, back["registry"]["uri"], tmp_path)["/greeting"] == b"hi\n"
    assert len(pulled(logs)) >= 4, logs


def test_a_project_never_reads_another_projects_cache(live: LiveServer, tmp_path: Path) -> None:
    repo, sha = make_repo(tmp_path)
    first = create(live, "iso-a", repo)
    build(live, first, body(sha, "config 1\n", "token 1"))
    # A warm worker's next build uses its own store only: no registry lookups, no pushes
    # (buildah would push every hit again).
    _, logs = build(live, first, body(sha, "config 1\n", "token 1", {"UNUSED": "1"}))
    assert cache_hits(logs) and not pulled(logs), logs
    assert not any("Pushing cache" in line or line.startswith("Layer cache:") for line in logs)
    # The same commit, files and values in another project: its first build reads only its
    # own (empty) cache repository, so nothing comes from iso-a's.
    other = create(live, "iso-b", repo)
    _, logs = build(live, other, body(sha, "config 1\n", "token 1"))
    says = [line for line in logs if line.startswith("Layer cache:")]
    assert says and "/iso-b/s/cache" in says[0] and "iso-a" not in says[0], logs[:30]
    assert not pulled(logs) and not cache_hits(logs), logs


def cache_tags(live: LiveServer, project: str) -> list[str]:
    done = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{live.registry}/{project}/s/cache"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    tags: list[str] = json.loads(done.stdout)["Tags"] if done.returncode == 0 else []
    return tags


def test_resetting_the_build_cache_drops_the_registry_cache_too(
    live: LiveServer, tmp_path: Path
) -> None:
    repo, sha = make_repo(tmp_path)
    svc = create(live, "reset-a", repo)
    build(live, svc, body(sha, "config 1\n", "token 1"))
    assert cache_tags(live, "reset-a")
    with live.client() as c:
        c.delete(f"{svc}/build-cache").raise_for_status()
    deadline = time.monotonic() + 60
    while cache_tags(live, "reset-a"):
        assert time.monotonic() < deadline, "the registry cache was not dropped"
        time.sleep(0.2)
    # Nothing of the earlier build is used: no image reuse, no layer from the registry.
    _, logs = build(live, svc, body(sha, "config 1\n", "token 1"))
    assert not any("Reusing the image" in line for line in logs)
    assert not pulled(logs) and not cache_hits(logs), logs


def test_garbage_collection_prunes_old_registry_cache_entries(
    live: LiveServer, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from shipyard.gc.build_cache import prune
    from shipyard.gc.registry import RegistryAdmin
    from shipyard.pipeline.registry import RegistryTarget
    from shipyard.registryauth import RegistryCredentials

    repo, sha = make_repo(tmp_path)
    svc = create(live, "gc-cache", repo)
    build(live, svc, body(sha, "config 1\n", "token 1"))
    entries = len(cache_tags(live, "gc-cache"))
    assert entries >= 5
    secret = (live.data_dir / "secret-key").read_text().strip()
    user, password = RegistryCredentials(secret).internal_credential()
    admin = RegistryAdmin(RegistryTarget(host=live.registry, username=user, password=password))
    try:
        now = datetime.now(UTC)
        # Entries of today stay, even with keepDays 0 (a build may be about to read them).
        assert prune(admin, "gc-cache/s/cache", now=now, keep_days=0) == 0
        assert len(cache_tags(live, "gc-cache")) == entries
        later = now + timedelta(days=15)
        assert prune(admin, "gc-cache/s/cache", now=later, keep_days=14) == entries
    finally:
        admin.close()
    assert cache_tags(live, "gc-cache") == []
