"""Pytest plugin (registered in tests/conftest.py): a live Shipyard (``shipyard up`` in a
child process) on free loopback ports, with its embedded registry, its buildah store
pre-seeded with the local busybox base image."""

from __future__ import annotations

import base64
import json
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
from shipyard.sandbox.sandbox import default_root, remove_instance
from shipyard.settings import read_instance_id
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
    # skopeo/buildah --authfile with the admin token for the embedded registry (token auth).
    authfile: Path

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


def start_server(
    data_dir: Path, *, args: tuple[str, ...] = (), port: int | None = None, **env: str
) -> tuple[subprocess.Popen[bytes], LiveServer]:
    """``shipyard up *args`` with ``env`` on top of the test defaults (``port``: the API's,
    when the caller must know it beforehand, e.g. for SHIPYARD_PUBLIC_URL)."""
    port, registry_port = port or free_port(), free_port()
    log_path = data_dir.parent / "server.log"
    environment = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_REGISTRY_PORT": str(registry_port),
        "SHIPYARD_BUILD_NETWORK": "isolated",  # the default: every e2e build runs in it
        "SHIPYARD_ALLOW_PRIVATE_URLS": "true",
        # The e2e tests build file:// repositories made under pytest's temp dirs.
        "SHIPYARD_ALLOWED_LOCAL_ROOTS": tempfile.gettempdir(),
        # Tests stop servers with builds still running: do not wait the default 30 s.
        "SHIPYARD_SHUTDOWN_GRACE_S": "2",
        **env,
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(BIN / "shipyard"), "up", *args],
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
    registry = f"127.0.0.1:{registry_port}"
    authfile = data_dir.parent / "registry-auth.json"
    auth = base64.b64encode(f"admin:{token}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    authfile.chmod(0o600)
    return proc, LiveServer(url, token, registry, data_dir, log_path, authfile)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def seed_base_image(data_dir: Path) -> BuildahStore:
    """The busybox base in the server's shared base-image store (every project may use it)."""
    store = BuildahStore(
        root=data_dir / "base-images" / "root", runroot=data_dir / "base-images" / "runroot"
    )
    build_busybox_base(Buildah(store), data_dir.parent / "seed")
    return store


def remove_sandbox(data_dir: Path) -> None:
    """The build users, namespaces, cgroups and stores a test server made."""
    try:
        instance = instance_id(data_dir)
    except OSError:
        return
    remove_instance(instance)


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
        remove_sandbox(data_dir)


def instance_id(data_dir: Path) -> str:
    return read_instance_id(data_dir)


def sandbox_dir(data_dir: Path) -> Path:
    return default_root(instance_id(data_dir))


def running_containers_under(path: Path, build_id: str | None = None) -> list[str]:
    """RUN containers and processes left by one server (``path`` = its data dir): rootless
    runc state in its build users' runtime dirs, and any live process of its build users
    (only those in ``build_id``'s cgroups, when given)."""
    import pwd

    found: list[str] = []
    sandbox = sandbox_dir(path)
    if build_id is None:
        found += [f"runc:{d.name}" for d in sandbox.glob("*/home/run/runc/*") if d.is_dir()]
    prefix = f"sy{instance_id(path)[:6]}-"
    uids = {e.pw_uid for e in pwd.getpwall() if e.pw_name.startswith(prefix)}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid not in uids:
                    continue
                if build_id is not None and f"/{build_id}-" not in (proc / "cgroup").read_text():
                    continue
                if "\nState:\tZ" in (proc / "status").read_text():
                    continue  # dead, not yet reaped: holds nothing
                found.append(f"pid:{proc.name}")
            except OSError:
                continue
    return found
