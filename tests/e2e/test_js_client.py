"""Northflank's official JS client (npm @northflank/js-client), unchanged, against a live
Shipyard: every call of the build contract, asserted on what the client returns."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live import LiveServer
from tests.helpers.sample_app import SampleApp

pytestmark = [pytest.mark.slow, pytest.mark.js]
JS_DIR = Path(__file__).resolve().parents[1] / "js"
BUILD_FIELDS = {"id", "status", "concluded", "createdAt"}


@pytest.fixture(scope="module")
def bundle_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    src = root / "src"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (src / "hello.txt").write_text("bundle\n")
    with tarfile.open(root / "app.tar", "w") as tar:
        for name in ("Dockerfile", "hello.txt"):
            tar.add(src / name, arcname=name)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/app.tar"
    server.shutdown()


@pytest.fixture(scope="module")
def results(live: LiveServer, sample_app: SampleApp, bundle_url: str) -> dict[str, Any]:
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "@northflank").exists():
        pytest.fail("node and tests/js/node_modules are needed (make test installs them)")
    out = subprocess.run(
        [
            "node",
            "contract.mjs",
            live.url,
            live.token,
            sample_app.url,
            bundle_url,
            sample_app.main_sha,
        ],
        cwd=JS_DIR,
        capture_output=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_creates(results: dict[str, Any]) -> None:
    assert results["project"]["data"]["id"] == "js-client"
    assert results["project"]["data"]["name"] == "JS Client"
    assert results["combined"]["data"]["id"] == "web"
    assert results["buildService"]["data"]["id"] == "builder"
    assert results["job"]["data"]["id"] == "migrate"
    for key in ("project", "combined", "buildService", "job"):
        assert results[key].get("error") is None


def test_start_responses_match_the_seed(results: dict[str, Any]) -> None:
    for key in ("startSha", "startBranch", "startPr", "startBundle", "startJob", "startSlow"):
        data = results[key]["data"]
        assert set(data) >= BUILD_FIELDS, (key, data)
        assert data["status"] in ("QUEUED", "PENDING") and data["concluded"] is False
        assert data["createdAt"].endswith("Z") and len(data["createdAt"]) == 24
    assert results["startBranch"]["data"]["branch"] == "feature"
    assert results["startPr"]["data"]["pullRequestId"] == 5


def test_builds_conclude_with_pullable_images(
    results: dict[str, Any], sample_app: SampleApp, live: LiveServer
) -> None:
    for key in ("doneSha", "doneBranch", "donePr", "doneBundle", "doneJob"):
        data = results[key]["data"]
        assert data["status"] == "SUCCESS", (key, data)
        assert data["success"] is True and data["message"] == "Image successfully built"
        subprocess.run(
            [
                "skopeo",
                "inspect",
                "--tls-verify=false",
                "--authfile",
                str(live.authfile),
                f"docker://{data['registry']['uri']}",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    assert results["doneSha"]["data"]["sha"] == sample_app.main_sha
    assert results["doneBranch"]["data"]["sha"] == sample_app.feature_sha
    assert results["donePr"]["data"]["sha"] == sample_app.pr_sha


def test_abort(results: dict[str, Any]) -> None:
    assert results["abort"].get("error") is None
    assert results["doneSlow"]["data"]["status"] == "ABORTED"


def test_errors_come_back_as_client_errors(results: dict[str, Any]) -> None:
    assert results["badSha"]["error"]["status"] == 400
    assert "sha" in results["badSha"]["error"]["message"]
    assert results["missing"]["error"]["status"] == 404


def test_team_scoped_path(results: dict[str, Any]) -> None:
    assert results["teamScoped"]["data"]["id"] == results["startSha"]["data"]["id"]


def test_list_and_pagination(results: dict[str, Any]) -> None:
    page1 = results["listPage1"]
    assert len(page1["data"]["builds"]) == 2
    assert page1["pagination"]["hasNextPage"] is True and page1["pagination"]["cursor"]
    everything = results["listAll"]["data"]["builds"]
    assert len(everything) == 4  # branch, pr, bundle, slow (the bad sha was refused: no build)
    ids = [b["id"] for b in everything]
    assert len(set(ids)) == len(ids)
    created = [b["createdAt"] for b in everything]
    assert created == sorted(created, reverse=True)


def test_logs_range_and_live_tail(results: dict[str, Any]) -> None:
    lines = [line["log"] for line in results["logs"]["data"]]
    assert any("==> building" in line for line in lines)
    assert all(line["containerId"] and line["ts"] for line in results["logs"]["data"])
    tailed = results["tailed"]
    assert not any(str(t).startswith("ERROR") for t in tailed), tailed
    assert any("==> building" in line for line in tailed)
    assert tailed[-1].startswith("==> success") or any("Image available" in t for t in tailed)


def test_edit_then_build_uses_the_edit(results: dict[str, Any]) -> None:
    for key in ("putCombined", "putCombinedAgain", "patchCombined", "putBuild", "patchBuild"):
        assert results[key].get("error") is None, (key, results[key])
    for key in ("putJob", "patchJob", "putCron", "patchCron"):
        assert results[key].get("error") is None, (key, results[key])
    assert results["putCombinedAgain"]["data"]["description"] == "put twice"
    assert results["patchBuild"]["data"]["description"] == "patched"
    # Started without a body, after the PATCH moved it to sub/Dockerfile.custom.
    assert results["startEdited"]["data"]["status"] in ("QUEUED", "PENDING")
    done = results["doneEdited"]["data"]
    assert done["status"] == "SUCCESS", done
    assert done["startedAt"].endswith("Z") and done["durations"]["total"] > 0
    assert any("sub-listing" in line for line in results["editedLogs"]["data"])


def test_build_options_source_and_cache(results: dict[str, Any]) -> None:
    for key in ("buildOptions", "buildSource", "jobBuildOptions", "jobBuildSource", "resetCache"):
        assert results[key].get("error") is None and results[key]["data"] == {}, key
    edited = results["editedAfter"]["data"]
    assert edited["vcsData"]["projectBranch"] == "feature"
    assert edited["buildConfiguration"]["dockerfileTarget"] == "base"
    assert edited["buildSettings"]["dockerfile"]["dockerFilePath"] == "/Dockerfile"


def test_branches_and_pull_requests(results: dict[str, Any], sample_app: SampleApp) -> None:
    for key in ("branches", "jobBranches"):
        branches = {b["name"]: b["commit"]["sha"] for b in results[key]["data"]["branches"]}
        assert branches == {"main": sample_app.main_sha, "feature": sample_app.feature_sha}
    assert len(results["branchesAll"]["data"]["branches"]) == 2  # followed the cursor
    for key in ("pullRequests", "jobPullRequests"):
        prs = results[key]["data"]["pullRequests"]
        assert [(pr["id"], pr["sha"]) for pr in prs] == [(5, sample_app.pr_sha)]


def test_build_metrics_and_job_runs(results: dict[str, Any]) -> None:
    for key in ("buildMetrics", "buildMetricsRange", "jobBuildMetrics"):
        data = results[key]["data"]
        assert results[key].get("error") is None, (key, results[key])
        assert {"cpu", "memory"} <= set(data), (key, data)
        for entry in data.values():
            assert entry["metricInfo"]["metricId"] and isinstance(entry["values"], list)
    duration = results["buildMetrics"]["data"]["buildDuration"]["values"][0]["data"][0]
    assert duration["value"] > 0
    assert results["jobRuns"]["data"] == {"runs": []}


def test_deletes(results: dict[str, Any]) -> None:
    for key in ("deleteJob", "deleteService", "deleteProject"):
        assert results[key].get("error") is None, (key, results[key])
    assert results["deletedService"]["error"]["id"] == "service-not-found"
    assert results["deleteProjectRefused"]["error"]["status"] == 409
    assert results["deletedProject"]["error"]["id"] == "project-not-found"
    assert results["missing"]["error"]["id"] == "build-not-found"
