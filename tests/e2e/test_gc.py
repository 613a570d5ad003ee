"""Garbage collection end to end: six builds of distinct ~5 MB images, ``shipyard gc`` with
keep-last 2, then the registry and the project's store hold about two images' worth, every
kept build's image pulls, collected builds say so, and pushing works again afterwards."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.gc.disk import store_dirs, total, usage
from tests.helpers.gc_builds import DOCKERFILE, LAYER, MB, build, pulls
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import BIN, LiveServer, sandbox_dir

pytestmark = pytest.mark.slow

BUILDS = 6
KEEP = 2


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("gc-repo")
    _git(repo, "init", "-q", "--initial-branch=main")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "initial")
    return repo


def create_service(live: LiveServer, repo: Path, name: str, **extra: Any) -> str:
    with live.client() as c:
        r = c.post("/v1/projects", json={"name": name})
        assert r.status_code == 200, r.text
        project = r.json()["data"]["id"]
        body = {
            "name": name,
            "vcsData": {"projectUrl": f"file://{repo}", "projectType": "self-hosted",
                        "projectBranch": "main"},
            **extra,
        }  # fmt: skip
        r = c.post(f"/v1/projects/{project}/services/combined", json=body)
        assert r.status_code == 200, r.text
        return f"/v1/projects/{project}/services/{r.json()['data']['id']}"


@pytest.fixture(scope="module")
def service(live: LiveServer, repo: Path) -> Iterator[str]:
    # Shipyard's own field: this service keeps fewer images than the operator's 10.
    yield create_service(live, repo, "gc", retention={"keepLast": KEEP, "keepDays": 0})


def shipyard_gc(live: LiveServer, *args: str) -> str:
    env = {**os.environ, "SHIPYARD_URL": live.url, "SHIPYARD_TOKEN": live.token,
           "HOME": str(live.data_dir.parent)}  # fmt: skip
    done = subprocess.run(
        [str(BIN / "shipyard"), "gc", *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def disk(live: LiveServer) -> tuple[int, int]:
    return usage(live.data_dir / "registry"), total(store_dirs(sandbox_dir(live.data_dir)))


def test_gc_keeps_the_last_images_and_frees_the_rest(live: LiveServer, service: str) -> None:
    builds = [build(live, service, n) for n in range(BUILDS)]
    registry_before, store_before = disk(live)
    assert registry_before > BUILDS * LAYER and store_before > BUILDS * LAYER

    dry = shipyard_gc(live, "--dry-run")
    assert f"gc/gc: would collect {BUILDS - KEEP} build(s)" in dry, dry
    assert disk(live)[0] >= registry_before  # a dry run deletes nothing
    assert all(pulls(live, b["registry"]["uri"]) for b in builds)

    out = shipyard_gc(live)
    assert f"collected {BUILDS - KEEP} build(s)" in out, out
    registry_after, store_after = disk(live)
    freed = (BUILDS - KEEP) * LAYER * 0.9
    assert registry_before - registry_after > freed, (registry_before, registry_after, out)
    assert store_before - store_after > freed, (store_before, store_after, out)
    # About two images' worth (plus the small base, manifests and metadata).
    assert registry_after < (KEEP + 1) * LAYER, registry_after
    assert store_after < (KEEP + 2) * LAYER, store_after

    # Shown with ``pytest -s``: the figures the README quotes.
    print(
        f"\nregistry {registry_before} -> {registry_after}, store {store_before} -> {store_after}"
    )
    print(out)
    kept, collected = builds[-KEEP:], builds[:-KEEP]
    with live.client() as c:
        for b in kept:
            data = c.get(f"{service}/build/{b['id']}").json()["data"]
            assert "imageCollected" not in data["registry"]
            assert pulls(live, b["registry"]["uri"]), b["id"]
        for b in collected:
            data = c.get(f"{service}/build/{b['id']}").json()["data"]
            assert data["registry"]["uri"] == b["registry"]["uri"]
            assert data["registry"]["imageCollected"] is True
            assert "image removed by garbage collection on" in data["message"]
            assert not pulls(live, b["registry"]["uri"]), b["id"]
        metrics = c.get("/metrics").text
    assert 'shipyard_disk_bytes{part="registry"}' in metrics
    assert 'shipyard_disk_bytes{part="stores"}' in metrics

    # The registry is writable again, and a second run finds nothing more to collect.
    newest = build(live, service, BUILDS)
    assert pulls(live, newest["registry"]["uri"])
    again = shipyard_gc(live)
    assert "collected 1 build(s)" in again, again  # keep-last 2: the oldest kept one goes


def test_keep_last_for_one_run(live: LiveServer, repo: Path) -> None:
    """``--keep-last`` / ``--keep-days`` replace the operator's defaults (10 images, 14 days)
    for one run; a service without its own retention follows them."""
    svc = create_service(live, repo, "plain")
    first, second = build(live, svc, 100), build(live, svc, 101)
    assert "gc/plain" not in shipyard_gc(live, "--dry-run")  # 10 / 14 days: nothing goes
    out = shipyard_gc(live, "--keep-last", "1", "--keep-days", "0")
    assert "plain/plain: collected 1 build(s)" in out, out
    assert first["id"] in out and second["id"] not in out
    assert pulls(live, second["registry"]["uri"]) and not pulls(live, first["registry"]["uri"])


def test_gc_while_a_build_runs(live: LiveServer, repo: Path) -> None:
    """A collection during a build: the registry's read-only restart and the store's hold do
    not break it (the store waits for the build, its push waits for the registry)."""
    svc = create_service(live, repo, "busy", retention={"keepLast": 1, "keepDays": 0})
    old = build(live, svc, 200)
    slow = f"FROM {BUSYBOX_IMAGE}\nRUN sleep 6 && head -c {MB} /dev/urandom > /blob\n"
    with live.client() as c:
        r = c.post(f"{svc}/build", json={"overrides": {"docker": {"dockerfileContents": slow}}})
        assert r.status_code == 200, r.text
        build_id = r.json()["data"]["id"]
        deadline = time.monotonic() + 120
        while c.get(f"{svc}/build/{build_id}").json()["data"]["status"] != "BUILDING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    outputs: list[str] = []
    gc = threading.Thread(target=lambda: outputs.append(shipyard_gc(live)))
    gc.start()
    done = live.wait(f"{svc}/build/{build_id}", timeout=300)
    gc.join(300)
    assert done["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-20:]
    assert pulls(live, done["registry"]["uri"])
    assert outputs and "store of busy" in outputs[0], outputs
    # A running build has no image yet: it displaced nothing, the old image stayed.
    assert "busy/busy" not in outputs[0] and pulls(live, old["registry"]["uri"])
    # Now it has: keep-last 1 lets the old one go.
    assert "busy/busy: collected 1 build(s)" in shipyard_gc(live)
    assert not pulls(live, old["registry"]["uri"]) and pulls(live, done["registry"]["uri"])
