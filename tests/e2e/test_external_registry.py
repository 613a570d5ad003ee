"""SHIPYARD_REGISTRY names an external registry (here a second distribution on loopback, with
a path prefix): pushes go there and registry.uri points there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.pipeline.builder import unmount_under
from shipyard.pipeline.registry import EmbeddedRegistry
from tests.helpers.live import seed_base_image, start_server, stop_server
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow


def test_pushes_go_to_the_external_registry(tmp_path: Path, sample_app: SampleApp) -> None:
    with EmbeddedRegistry(tmp_path / "external") as external:
        data = tmp_path / "data"
        store = seed_base_image(data)
        proc, live = start_server(data, SHIPYARD_REGISTRY=f"127.0.0.1:{external.port}/team/images")
        try:
            with live.client() as c:
                c.post("/v1/projects", json={"name": "p"})
                c.post(
                    "/v1/projects/p/services/build",
                    json={"name": "s", "vcsData": {"projectUrl": sample_app.url}},
                )
                build_id = c.post(
                    "/v1/projects/p/services/s/build",
                    json={"branch": "main", "overrides": {"docker": {"dockerfileTarget": "base"}}},
                ).json()["data"]["id"]
            build = live.wait(f"/v1/projects/p/services/s/build/{build_id}")
            assert build["status"] == "SUCCESS", build
            uri = build["registry"]["uri"]
            assert uri.startswith(f"127.0.0.1:{external.port}/team/images/p/s@sha256:")
            subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", f"docker://{uri}"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            assert not (data / "registry").exists()  # no embedded registry was started
        finally:
            stop_server(proc)
            unmount_under(store.root)
