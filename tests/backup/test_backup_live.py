"""``shipyard backup`` of a running server, ``restore`` refused on its data dir and done into a
fresh one, a second server on the copy: same token, same builds, sealed secrets readable.
Also what ``shipyard up`` says about the admin token, and ``shipyard tokens`` end to end."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.live import LiveServer, remove_sandbox, start_server, stop_server

pytestmark = pytest.mark.slow
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
SECRET = "sealed-build-arg-5e1f"


def shipyard(
    *args: str, data_dir: Path, server: LiveServer | None = None, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIPYARD_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    if server is not None:
        env.update(SHIPYARD_URL=server.url, SHIPYARD_TOKEN=token or server.token)
    return subprocess.run(
        [SHIPYARD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        yield started
    finally:
        for proc, data_dir in started:
            stop_server(proc)
            remove_sandbox(data_dir)


def test_backup_restore_round_trip_with_a_live_server(
    tmp_path: Path, servers: list[tuple[subprocess.Popen[bytes], Path]]
) -> None:
    (tmp_path / "a").mkdir()
    first_dir = tmp_path / "a" / "data"
    proc, first = start_server(first_dir)
    servers.append((proc, first_dir))
    banner = first.log_path.read_text()
    assert f"Admin token (generated; shown this once): {first.token}" in banner

    with first.client() as api:
        assert api.post("/v1/projects", json={"name": "demo"}).status_code == 200
        body = {
            "name": "web",
            "vcsData": {"projectUrl": "file:///nowhere", "projectType": "self-hosted"},
            "buildArguments": {"TOKEN": SECRET},
        }
        assert api.post("/v1/projects/demo/services/build", json=body).status_code == 200
        started = api.post("/v1/projects/demo/services/web/build", json={"branch": "main"})
        build_id = started.json()["data"]["id"]

    archive = tmp_path / "backup.tar.gz"
    done = shipyard("backup", str(archive), data_dir=first_dir)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "losing the secret key loses every sealed secret" in " ".join(done.stderr.split())

    refused = shipyard("restore", str(archive), data_dir=first_dir)
    assert refused.returncode == 1 and "running" in refused.stderr

    (tmp_path / "b").mkdir()
    second_dir = tmp_path / "b" / "data"
    done = shipyard("restore", str(archive), data_dir=second_dir)
    assert done.returncode == 0, done.stderr
    proc, second = start_server(second_dir)
    servers.append((proc, second_dir))
    banner = second.log_path.read_text()
    assert second.token == first.token and second.token not in banner
    assert f"Admin token: in {second_dir.resolve() / 'admin-token'}" in " ".join(banner.split())
    with second.client() as api:
        arguments = api.get("/v1/projects/demo/services/web/build-arguments")
        assert arguments.json()["data"]["buildArguments"] == {"TOKEN": SECRET}
        build = api.get(f"/v1/projects/demo/services/web/build/{build_id}")
        assert build.status_code == 200, build.text


def test_tokens_list_and_revoke_through_the_cli(
    tmp_path: Path, servers: list[tuple[subprocess.Popen[bytes], Path]]
) -> None:
    data_dir = tmp_path / "data"
    proc, server = start_server(data_dir)
    servers.append((proc, data_dir))
    created = shipyard("tokens", "create", "--name", "ci", "--project", "demo", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    assert (
        httpx.get(
            f"{server.url}/v1/login", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )

    listed = shipyard("tokens", "list", "-o", "json", data_dir=data_dir, server=server)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "ci" and row["projectId"] == "demo" and token not in listed.stdout
    table = shipyard("tokens", "list", data_dir=data_dir, server=server)
    assert "ci" in table.stdout and "all" in table.stdout

    # A token cannot list or revoke tokens, even its own.
    denied = shipyard(
        "tokens", "revoke", str(row["id"]), data_dir=data_dir, server=server, token=token
    )
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr

    revoked = shipyard("tokens", "revoke", str(row["id"]), data_dir=data_dir, server=server)
    assert revoked.returncode == 0, revoked.stderr
    assert (
        httpx.get(
            f"{server.url}/v1/login", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )
