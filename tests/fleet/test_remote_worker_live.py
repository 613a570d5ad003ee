"""A worker as it runs on another machine, on loopback: no embedded registry of its own, no
registry password — ``SHIPYARD_REGISTRY=<the API's registry>`` with
``SHIPYARD_REGISTRY_AUTH=shipyard``. Its build pushes with a credential of its own project
signed with the shared secret key, the image is pullable with the project's pull credential,
and a worker with another secret key (or a registry password) is refused with a message that
says why."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import create_service, start_build
from tests.fleet.fleet import Fleet, new_secret_key
from tests.fleet.remote_host import remote_host
from tests.helpers.live import LiveServer
from tests.helpers.pg import scratch_database
from tests.helpers.sample_app import SampleApp

pytestmark = pytest.mark.slow

QUICK = "FROM scratch\nCOPY app.txt /app.txt\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with scratch_database("shipyard_remote_worker") as url:
        fleet = Fleet(tmp_path_factory.mktemp("remote"), url, new_secret_key())
        try:
            fleet.start_api()
            yield fleet
        finally:
            fleet.close()


def remote_env(fleet: Fleet, **extra: str) -> dict[str, str]:
    assert fleet.api is not None
    return {
        "SHIPYARD_REGISTRY": fleet.api.registry,  # 127.0.0.1:<the API's registry port>
        "SHIPYARD_REGISTRY_AUTH": "shipyard",
        **extra,
    }


def test_a_remote_worker_pushes_with_per_build_credentials(
    fleet: Fleet, sample_app: SampleApp
) -> None:
    live = fleet.api
    assert live is not None
    worker = fleet.add_worker(**remote_env(fleet))
    # Nothing of a registry of its own: it pushes to the API's.
    assert not (worker.data_dir / "registry").exists()
    assert not (worker.data_dir / "registry.yml").exists()
    svc = create_service(live, sample_app.url, "remote")
    build_id = start_build(live, svc, dockerfile=QUICK)
    data = live.wait(f"{svc}/build/{build_id}", timeout=180)
    assert data["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-30:]
    uri = data["registry"]["uri"]
    assert uri.startswith(f"{live.registry}/p/remote@sha256:"), uri
    with live.client() as c:
        creds = c.get("/v1/projects/p/registry-credentials").json()["data"]
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false",
         "--creds", f"{creds['username']}:{creds['password']}", f"docker://{uri}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    assert fleet.stop_worker(worker) == 0


def test_a_remote_worker_with_another_secret_key_is_refused_clearly(fleet: Fleet) -> None:
    """Its per-build credentials would be refused by the API's token endpoint (and it could
    not open the builds' sealed settings): it does not start, and says why, instead of
    taking builds and failing every push."""
    with pytest.raises(RuntimeError) as caught:
        fleet.add_worker(**remote_env(fleet, SHIPYARD_SECRET_KEY=new_secret_key()))
    worker = fleet.workers[-1]
    assert worker.proc is not None and worker.proc.wait(timeout=10) == 2
    text = " ".join(str(caught.value).split())
    assert "refused this worker's registry credential" in text, text
    assert "SHIPYARD_SECRET_KEY is not the API's" in text, text


def test_a_remote_worker_with_a_password_is_refused(fleet: Fleet) -> None:
    with pytest.raises(RuntimeError) as caught:
        fleet.add_worker(**remote_env(fleet, SHIPYARD_REGISTRY_PASSWORD="root"))
    assert "takes no SHIPYARD_REGISTRY_USERNAME/_PASSWORD" in " ".join(str(caught.value).split())


def host_address() -> str | None:
    """This machine's first global IPv4 address that is not a build network's."""
    listing = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    for line in listing.splitlines():
        words = line.split()
        if "inet" in words:
            ip = ipaddress.ip_interface(words[words.index("inet") + 1]).ip
            if ip not in ipaddress.ip_network("10.213.0.0/16"):
                return str(ip)
    return None


def pullable(live: LiveServer, uri: str, host: str) -> subprocess.CompletedProcess[str]:
    with live.client() as c:
        creds = c.get("/v1/projects/p/registry-credentials").json()["data"]
    return subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false",
         "--creds", f"{creds['username']}:{creds['password']}", f"docker://{host}"
         + uri[uri.index("/"):]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def run_public(tmp_path: Path, sample_app: SampleApp, address: str, name: str) -> None:
    """An API that faces the network (SHIPYARD_HOST, SHIPYARD_REGISTRY_LISTEN) and names
    SHIPYARD_PUBLIC_URL at ``address`` as the realm; a worker that knows the API only as
    ``address``. A build reaches SUCCESS and its image is pullable there."""
    from shipyard.pipeline.net import free_port

    with scratch_database(f"shipyard_remote_{name}") as url:
        fleet = Fleet(tmp_path, url, new_secret_key())
        try:
            api_port = free_port()
            public = f"http://{address}:{api_port}"
            live = fleet.start_api(
                port=api_port,
                SHIPYARD_HOST="0.0.0.0",
                SHIPYARD_REGISTRY_LISTEN="0.0.0.0",
                SHIPYARD_PUBLIC_URL=public,
            )
            remote_registry = f"{address}:{live.registry.rsplit(':', 1)[1]}"
            worker = fleet.add_worker(
                SHIPYARD_REGISTRY=remote_registry,
                SHIPYARD_REGISTRY_AUTH="shipyard",
                SHIPYARD_PUBLIC_URL=public,
            )
            assert "warning" not in worker.log_path.read_text()  # the start-up check passed
            svc = create_service(live, sample_app.url, name)
            build_id = start_build(live, svc, dockerfile=QUICK)
            data = live.wait(f"{svc}/build/{build_id}", timeout=180)
            assert data["status"] == "SUCCESS", live.logs(f"{svc}/build-logs", build_id)[-30:]
            uri = data["registry"]["uri"]
            assert uri.startswith(f"{remote_registry}/p/{name}@sha256:"), uri
            inspected = pullable(live, uri, remote_registry)
            assert inspected.returncode == 0, inspected.stderr
        finally:
            fleet.close()


def test_a_worker_reaches_the_api_by_its_public_address(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    """This host's own address: the worker's builds reach it through exactly one DNAT rule
    per address:port (sandbox/endpoints.py), as the API machine's own builds would."""
    address = host_address()
    if address is None:
        pytest.skip("no global IPv4 address on this machine")
    run_public(tmp_path, sample_app, address, "public")


def test_a_worker_reaches_an_api_on_another_machine_at_a_private_address(
    tmp_path: Path, sample_app: SampleApp
) -> None:
    """Another machine (a namespace at 10.98.x.2, a private range builds are refused): the
    worker's builds are let through to exactly the registry's and the realm's port."""
    with remote_host() as other:
        run_public(tmp_path, sample_app, other.address, "private")
