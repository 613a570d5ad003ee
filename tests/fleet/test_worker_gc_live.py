"""Scale-out keeps its disks and database bounded: a ``shipyard worker`` prunes its own buildah
stores on ``SHIPYARD_GC_INTERVAL_S`` (images of builds the policy no longer keeps) and leaves
the registry alone; ``shipyard up`` with the procrastinate executor and no worker of its own
runs log retention and, through the fleet's push gate, the registry's collection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.push_gate import FleetPushGate
from shipyard.gc.disk import store_dirs, total
from shipyard.pipeline.run import _GC_WAIT
from tests.fleet.fleet import Fleet, new_secret_key
from tests.helpers.gc_builds import DOCKERFILE, LAYER, build, pulls
from tests.helpers.live import LiveServer, sandbox_dir
from tests.helpers.pg import scratch_database
from tests.helpers.upstream import Upstream

pytestmark = pytest.mark.slow

BUILDS = 3
KEEP = 1


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with scratch_database("shipyard_scale_worker_gc") as url:
        fleet = Fleet(tmp_path_factory.mktemp("fleet-gc"), url, new_secret_key())
        try:
            # Logs of builds concluded more than ~2 s ago go, checked every second.
            fleet.start_api(
                SHIPYARD_LOG_RETENTION_DAYS="0.00002", SHIPYARD_LOG_RETENTION_INTERVAL_S="1"
            )
            fleet.add_worker(SHIPYARD_GC_INTERVAL_S="2")
            yield fleet
        finally:
            fleet.close()


def service(live: LiveServer, repo: str, name: str = "gc") -> str:
    with live.client() as c:
        r = c.post("/v1/projects", json={"name": name})
        assert r.status_code == 200, r.text
        project = r.json()["data"]["id"]
        body = {"name": name, "retention": {"keepLast": KEEP, "keepDays": 0},
                "vcsData": {"projectUrl": repo, "projectType": "self-hosted",
                            "projectBranch": "main"}}  # fmt: skip
        r = c.post(f"/v1/projects/{project}/services/combined", json=body)
        assert r.status_code == 200, r.text
        return f"/v1/projects/{project}/services/{r.json()['data']['id']}"


def test_a_worker_prunes_its_store_and_the_api_expires_logs(
    fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    live, [worker] = fleet.api, fleet.workers
    assert live is not None
    up = Upstream(tmp_path_factory.mktemp("worker-gc-repo"))
    up.commit({"Dockerfile": DOCKERFILE}, "initial")
    svc = service(live, up.url)
    builds = [build(live, svc, n) for n in range(BUILDS)]
    stores = store_dirs(sandbox_dir(worker.data_dir))

    # The worker's schedule removes the images of the builds keep-last 1 lets go (runs
    # between the builds take one each).
    def runs() -> list[str]:
        text = worker.log_path.read_text()
        return [ln.split("store-gc: ", 1)[1] for ln in text.splitlines() if "store-gc: " in ln]

    deadline = time.monotonic() + 90
    while sum(int(run.split()[0]) for run in runs()) < BUILDS - KEEP:
        assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
        time.sleep(1)
    assert all(run.endswith(" 0 errors") for run in runs()), runs()
    # The kept image, the base and the metadata are left.
    assert total(stores) < (KEEP + 1) * LAYER, (total(stores), runs())

    # The registry is the API machine's: every image still pulls, none is marked collected.
    with live.client() as c:
        for b in builds:
            data = c.get(f"{svc}/build/{b['id']}").json()["data"]
            assert "imageCollected" not in data["registry"], data
            assert pulls(live, b["registry"]["uri"]), b["id"]

    # Log retention runs on the API without a worker of its own.
    deadline = time.monotonic() + 60
    with live.client() as c:
        while True:
            shown = [c.get(f"{svc}/build/{b['id']}").json()["data"] for b in builds]
            if all(d.get("logsExpiredAt") for d in shown):
                break
            assert time.monotonic() < deadline, shown
            time.sleep(1)
    assert any("log-retention: " in ln for ln in live.log_path.read_text().splitlines())


def test_the_registry_is_collected_with_every_workers_pushes_held(
    fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A push on a worker waits while the fleet's gate is held for the registry's collection
    (as ``POST /v1/gc`` on the API holds it), then goes on; the collection through the API
    deletes what keep-last lets go, and the kept image still pulls."""
    live = fleet.api
    assert live is not None
    up = Upstream(tmp_path_factory.mktemp("registry-gc-repo"))
    up.commit({"Dockerfile": DOCKERFILE}, "initial")
    svc = service(live, up.url, "registry-gc")
    old = [build(live, svc, n) for n in range(2)]

    with FleetPushGate(jobs.conninfo(fleet.database_url)).maintenance(), live.client() as c:
        r = c.post(f"{svc}/build", json={"overrides": {"buildArguments": {"N": "9"}}})
        assert r.status_code == 200, r.text
        build_id = r.json()["data"]["id"]
        deadline = time.monotonic() + 120
        while not any(_GC_WAIT in ln for ln in live.logs(f"{svc}/build-logs", build_id)):
            data = c.get(f"{svc}/build/{build_id}").json()["data"]
            assert time.monotonic() < deadline and not data["concluded"], data
            time.sleep(0.5)
        time.sleep(2)  # held: the reuse check (CLONING) or the push (UPLOADING) waits
        assert not c.get(f"{svc}/build/{build_id}").json()["data"]["concluded"]
    newest = live.wait(f"{svc}/build/{build_id}", timeout=300)
    assert newest["status"] == "SUCCESS", newest

    with live.client() as c:
        r = c.post("/v1/gc", timeout=300)
        assert r.status_code == 200, r.text
        report = r.json()["data"]
        assert report["errors"] == [], report
        [mine] = [s for s in report["services"] if s["projectId"] == svc.split("/")[3]]
        assert sorted(mine["collected"]) == sorted(b["id"] for b in old), report
        for b in old:
            data = c.get(f"{svc}/build/{b['id']}").json()["data"]
            assert data["registry"]["imageCollected"] is True
            assert not pulls(live, b["registry"]["uri"]), b["id"]
    assert pulls(live, newest["registry"]["uri"])
