"""The layer cache never gives an image a fresh build would not: a build argument used only by
LABEL/ENV (buildah #5501), a changed secret mount value; and unchanged builds still hit it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live import LiveServer

pytestmark = pytest.mark.slow

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip


def repo_with(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, text in files.items():
        (repo / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    return repo


def image_config(live: LiveServer, ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{ref}"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    config: dict[str, Any] = json.loads(out)["config"]
    return config


def build(live: LiveServer, svc: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    with live.client() as c:
        build_id = c.post(f"{svc}/build", json=body).json()["data"]["id"]
    done = live.wait(f"{svc}/build/{build_id}")
    logs = live.logs(f"{svc}/build-logs", build_id)
    assert done["status"] == "SUCCESS", logs[-15:]
    return done, logs


def test_a_build_argument_used_only_by_label_and_env_is_not_served_stale(
    live: LiveServer, tmp_path: Path
) -> None:
    repo = repo_with(tmp_path, {
        "Dockerfile": "FROM scratch\nARG GREETING=hi\nCOPY hello.txt /hello.txt\n"
                      "LABEL greeting=$GREETING\nENV GREETING=$GREETING\n",
        "hello.txt": "hello\n",
    })  # fmt: skip
    with live.client() as c:
        c.post("/v1/projects", json={"name": "cache-args"})
        c.post("/v1/projects/cache-args/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}})  # fmt: skip
    svc = "/v1/projects/cache-args/services/s"
    first, _ = build(live, svc, {"branch": "main"})
    assert image_config(live, first["registry"]["uri"])["Labels"]["greeting"] == "hi"
    ahoy, _ = build(
        live, svc, {"branch": "main", "overrides": {"buildArguments": {"GREETING": "ahoy"}}}
    )
    config = image_config(live, ahoy["registry"]["uri"])
    assert config["Labels"]["greeting"] == "ahoy" and "GREETING=ahoy" in config["Env"]
    # The same declared value plus an argument no ARG declares: no whole-build reuse (the
    # arguments differ), and every step comes from the layer cache.
    body = {"branch": "main", "overrides": {"buildArguments": {"GREETING": "ahoy", "UNUSED": "1"}}}
    again, logs = build(live, svc, body)
    assert image_config(live, again["registry"]["uri"])["Labels"]["greeting"] == "ahoy"
    steps = [line for line in logs if "STEP " in line]
    hits = [line for line in logs if "Using cache" in line]
    assert len(hits) >= 4, (steps, hits)  # COPY, the key LABEL, LABEL, ENV
    # Back to the default: the first image's layers again.
    back, logs = build(live, svc, {"branch": "main", "overrides": {"buildArguments": {"X": "2"}}})
    assert image_config(live, back["registry"]["uri"])["Labels"]["greeting"] == "hi"


def test_a_re_pushed_base_image_is_not_served_from_an_earlier_build(
    live: LiveServer, tmp_path: Path
) -> None:
    from shipyard.pipeline.builder import BuildahStore
    from tests.helpers.images import BUSYBOX_IMAGE

    store = BuildahStore(
        root=live.data_dir / "base-images" / "root",
        runroot=live.data_dir / "base-images" / "runroot",
    )
    base = f"{live.registry}/shared/fixme:1"

    def publish(marker: str) -> None:
        """The operator publishes shared/fixme:1 (again), with a different /marker."""
        ctx = tmp_path / f"base-{marker}"
        ctx.mkdir()
        (ctx / "marker").write_text(marker)
        (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY marker /marker\n")
        tag = f"localhost/fixme:{marker}"
        for argv in (
            ["bud", "--isolation", "oci", "--runtime", "/usr/sbin/runc", "-t", tag, str(ctx)],
            ["push", "--tls-verify=false", "--authfile", str(live.authfile), tag,
             f"docker://{base}"],
        ):  # fmt: skip
            subprocess.run(["buildah", *store.args(), *argv], check=True, capture_output=True,
                           timeout=120)  # fmt: skip

    publish("old")
    repo = repo_with(tmp_path, {"Dockerfile": f"FROM {base}\nRUN cat /marker > /seen\n"})
    with live.client() as c:
        c.post("/v1/projects", json={"name": "cache-base"})
        c.post("/v1/projects/cache-base/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}})  # fmt: skip
    svc = "/v1/projects/cache-base/services/s"
    first, _ = build(live, svc, {"branch": "main"})
    same, logs = build(live, svc, {"branch": "main"})
    assert same["registry"]["uri"] == first["registry"]["uri"]
    assert any("Reusing the image of build" in line and "base images" in line for line in logs)
    publish("new")
    fresh, logs = build(live, svc, {"branch": "main"})
    assert fresh["registry"]["uri"] != first["registry"]["uri"], logs
    assert any(f"Base image {base} changed" in line for line in logs), logs[:20]


def test_an_updated_shared_local_base_image_is_not_served_from_an_earlier_build(
    live: LiveServer, tmp_path: Path
) -> None:
    from shipyard.pipeline.builder import BuildahStore
    from tests.helpers.images import BUSYBOX_IMAGE

    store = BuildahStore(
        root=live.data_dir / "base-images" / "root",
        runroot=live.data_dir / "base-images" / "runroot",
    )
    base = "localhost/shipyard-test/mutable:1"

    def publish(marker: str) -> None:
        """The operator puts a new localhost/…/mutable:1 into the shared base-image store."""
        ctx = tmp_path / f"local-{marker}"
        ctx.mkdir()
        (ctx / "marker").write_text(marker)
        (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY marker /marker\n")
        subprocess.run(["buildah", *store.args(), "bud", "--isolation", "oci", "--runtime",
                        "/usr/sbin/runc", "-t", base, str(ctx)],
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    publish("old")
    repo = repo_with(tmp_path, {"Dockerfile": f"FROM {base}\nRUN cat /marker > /seen\n"})
    with live.client() as c:
        c.post("/v1/projects", json={"name": "cache-local"})
        c.post("/v1/projects/cache-local/services/build",
               json={"name": "s", "vcsData": {"projectUrl": f"file://{repo}"}})  # fmt: skip
    svc = "/v1/projects/cache-local/services/s"
    first, _ = build(live, svc, {"branch": "main"})
    same, logs = build(live, svc, {"branch": "main"})
    assert same["registry"]["uri"] == first["registry"]["uri"], logs[:15]
    publish("new")
    fresh, logs = build(live, svc, {"branch": "main"})
    assert fresh["registry"]["uri"] != first["registry"]["uri"], logs[:15]
    assert any(f"Base image {base} changed" in line for line in logs), logs[:15]
