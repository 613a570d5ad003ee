"""Image tags: an immutable :<build id> per build, :<sha> and :<branch> moving to the newest
build, :latest for the service's own branch; registry.uri stays the digest."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow


def digest_of(live: LiveServer, ref: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(live.authfile),
         f"docker://{ref}"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return str(json.loads(out)["Digest"])


def test_every_build_gets_its_own_tag_and_the_moving_tags_follow(
    live: LiveServer, sample_app: SampleApp
) -> None:
    with live.client() as c:
        c.post("/v1/projects", json={"name": "tags"})
        c.post("/v1/projects/tags/services/combined", json={
            "name": "web", "vcsData": {"projectUrl": sample_app.url, "projectBranch": "main"},
        })  # fmt: skip
    svc = "/v1/projects/tags/services/web"
    builds = []
    for greeting in ("one", "two"):
        with live.client() as c:
            body = {"overrides": {"buildArguments": {"GREETING": greeting},
                                  "docker": {"dockerfileTarget": "final"}}}  # fmt: skip
            build_id = c.post(f"{svc}/build", json=body).json()["data"]["id"]
        build = live.wait(f"{svc}/build/{build_id}")
        assert build["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-10:]
        builds.append(build)
    repo = builds[0]["registry"]["uri"].split("@")[0]
    first, second = (b["registry"]["uri"].split("@")[1] for b in builds)
    assert first != second
    assert digest_of(live, f"{repo}:{builds[0]['id']}") == first  # immutable
    assert digest_of(live, f"{repo}:{builds[1]['id']}") == second
    for moving in (sample_app.main_sha, "main", "latest"):
        assert digest_of(live, f"{repo}:{moving}") == second, moving
