"""Pytest plugin (registered in tests/conftest.py): a live Shipyard (``shipyard up`` in a
child process) on free loopback ports, with its embedded registry, its buildah store
pre-seeded with the local busybox base image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.pipeline.builder import Buildah, BuildahStore, unmount_under
from shipyard.pipeline.net import free_port
from tests.helpers.images import build_busybox_base
from tests.helpers.sample_app import SampleApp, make_sample_app

BIN = Path(sys.executable).parent


@dataclass
class LiveServer:
    url: str
    token: str
    registry: str
    data_dir: Path
    log_path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def wait(self, path: str, *, timeout: float = 120) -> dict[str, Any]:
        """Poll a build until it concludes; returns its data."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                data: dict[str, Any] = c.get(path).json()["data"]
                if data["concluded"]:
                    return data
                if time.monotonic() > deadline:
                    raise AssertionError(f"build did not conclude: {data}")
                time.sleep(0.2)

    def logs(self, path: str, build_id: str) -> list[str]:
        with self.client() as c:
            r = c.get(path, params={"buildId": build_id, "lineLimit": 10000})
            return [line["log"] for line in r.json()["data"]]


def start_server(data_dir: Path, **env: str) -> tuple[subprocess.Popen[bytes], LiveServer]:
    port, registry_port = free_port(), free_port()
    log_path = data_dir.parent / "server.log"
    environment = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_REGISTRY_PORT": str(registry_port),
        "SHIPYARD_BUILD_NETWORK": "none",
        "SHIPYARD_ALLOW_PRIVATE_URLS": "true",
        # The e2e tests build file:// repositories made under pytest's temp dirs.
        "SHIPYARD_ALLOWED_LOCAL_ROOTS": tempfile.gettempdir(),
        **env,
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(BIN / "shipyard"), "up"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"shipyard up failed:\n{log_path.read_text()}")
        time.sleep(0.1)
    token = (data_dir / "admin-token").read_text().strip()
    return proc, LiveServer(url, token, f"127.0.0.1:{registry_port}", data_dir, log_path)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def seed_base_image(data_dir: Path) -> BuildahStore:
    store = BuildahStore(
        root=data_dir / "buildah" / "root", runroot=data_dir / "buildah" / "runroot"
    )
    build_busybox_base(Buildah(store), data_dir.parent / "seed")
    return store


@pytest.fixture(scope="module")
def sample_app(tmp_path_factory: pytest.TempPathFactory) -> SampleApp:
    return make_sample_app(tmp_path_factory.mktemp("repos"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("shipyard")
    data_dir = root / "data"
    store = seed_base_image(data_dir)
    proc, server = start_server(data_dir)
    try:
        yield server
    finally:
        stop_server(proc)
        unmount_under(store.root)


def running_containers_under(path: Path) -> list[str]:
    """runc containers (RUN steps) whose bundle lies under ``path``: scoped to one server's
    data dir, so other tests' builds on this machine do not count."""
    import json

    out = subprocess.run(
        ["runc", "list", "--format", "json"], capture_output=True, text=True, timeout=30
    )
    entries = json.loads(out.stdout or "null") or []
    root = str(path.resolve())
    return [e["id"] for e in entries if str(e.get("bundle", "")).startswith(root)]
