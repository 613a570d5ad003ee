"""shipyard.client against httpx.MockTransport: request bodies of every seed variant, encoding
of secret contents, pagination, error mapping, server-sent events, wait."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shipyard.client import (
    AsyncShipyard,
    Build,
    BuildRef,
    LogLine,
    Project,
    Shipyard,
    ShipyardConnectionError,
    ShipyardError,
    ShipyardTimeoutError,
    Workload,
)
from shipyard.client._sse import ServerSentEvent, SSEDecoder

BASE = "http://shipyard.test"
TOKEN = "tok-123"
SHA = "262ed9817b3cad5142fbceabe0c9e371e390d616"
SVC = "/v1/projects/demo/services/web"
JOB = "/v1/projects/demo/jobs/migrate"
SEED_DATA = "VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU="

Handler = Callable[[httpx.Request], httpx.Response]


def build_json(build_id: str = "joyous-view-6290", **fields: Any) -> dict[str, Any]:
    return {
        "id": build_id,
        "branch": "main",
        "pullRequestId": None,
        "sha": SHA,
        "registry": {},
        "createdAt": "2021-07-28T15:55:38.296Z",
        "status": "QUEUED",
        "concluded": False,
        "success": False,
        "message": None,
        **fields,
    }


class Server:
    """Records requests; answers with ``handler`` (default: a queued build)."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda _: httpx.Response(200, json={"data": build_json()}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def client(self) -> Shipyard:
        return Shipyard(BASE, TOKEN, transport=httpx.MockTransport(self))

    def async_client(self) -> AsyncShipyard:
        return AsyncShipyard(BASE, TOKEN, transport=httpx.MockTransport(self))


@pytest.fixture
def server() -> Server:
    return Server()


# --- request bodies ------------------------------------------------------------------------


def test_auth_header_and_base_url_with_trailing_slash(server: Server) -> None:
    with Shipyard(BASE + "/", TOKEN, transport=httpx.MockTransport(server)) as sy:
        sy.start_service_build("demo", "web")
    request = server.last
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"].startswith("shipyard-client/")
    assert str(request.url) == f"{BASE}{SVC}/build"
    assert "Idempotency-Key" not in request.headers


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({}, {}),
        ({"sha": SHA}, {"sha": SHA}),
        ({"branch": "feature"}, {"branch": "feature"}),
        ({"pull_request_id": 5}, {"pullRequestId": 5}),
        ({"sha": SHA, "branch": "feature"}, {"sha": SHA, "branch": "feature"}),
        (
            {"bundle_url": "https://example.com/archive.tar"},
            {"bundleUrl": "https://example.com/archive.tar"},
        ),
        (
            {"bundle_url": "https://example.com/a.tgz", "branch": "main", "sha": SHA},
            {"bundleUrl": "https://example.com/a.tgz", "branch": "main", "sha": SHA},
        ),
        ({"target": "base"}, {"overrides": {"docker": {"dockerfileTarget": "base"}}}),
        (
            {"branch": "main", "dockerfile_path": "/sub/Dockerfile.custom", "work_dir": "/sub"},
            {
                "branch": "main",
                "overrides": {
                    "docker": {"dockerFilePath": "/sub/Dockerfile.custom", "dockerWorkDir": "/sub"}
                },
            },
        ),
    ],
)
def test_start_service_build_bodies(
    server: Server, kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    with server.client() as sy:
        sy.start_service_build("demo", "web", **kwargs)
    assert server.last.method == "POST"
    assert server.last.url.path == f"{SVC}/build"
    assert server.body() == body
    assert list(server.body()) == list(body)  # bundleUrl first in the bundle variant


def test_start_service_build_seed_overrides_exactly(server: Server) -> None:
    """The seed's overrides example, with str contents sent as utf-8 as given."""
    with server.client() as sy:
        sy.start_service_build(
            "demo",
            "web",
            sha="262ed9817b3cad5142fbceabe0c9e371e390d616",
            build_arguments={"ARGUMENT_1": "abcdef", "ARGUMENT_2": "12345"},
            # The documented object as is, or the text (sent base64, utf-8): the same body.
            build_files={"/dir/fileName": {"data": SEED_DATA, "encoding": "utf-8"}},
            secret_mounts={
                "example-secret-mount_1": "This is an example with a templated ${NODE_ENV} variable"
            },
            dockerfile_path="/Dockerfile",
            work_dir="/",
        )
    seed = '{"sha":"262ed9817b3cad5142fbceabe0c9e371e390d616","overrides":{"buildArguments":{"ARGUMENT_1":"abcdef","ARGUMENT_2":"12345"},"buildFiles":{"/dir/fileName":{"data":"VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU=","encoding":"utf-8"}},"dockerSecretMounts":{"example-secret-mount_1":{"data":"VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU=","encoding":"utf-8"}},"docker":{"dockerFilePath":"/Dockerfile","dockerWorkDir":"/"}}}'
    assert server.body() == json.loads(seed)


def test_contents_are_always_base64(server: Server) -> None:
    raw = b"\x00\xffbinary\n"
    with server.client() as sy:
        sy.start_service_build(
            "demo",
            "web",
            build_files={"/config/key.bin": raw, "/config/note.txt": "héllo"},
            secret_mounts={"token": b"s3cr3t"},
        )
    overrides = server.body()["overrides"]
    assert overrides["buildFiles"] == {
        "/config/key.bin": {"data": base64.b64encode(raw).decode(), "encoding": "utf-8"},
        "/config/note.txt": {
            "data": base64.b64encode("héllo".encode()).decode(),
            "encoding": "utf-8",
        },
    }
    assert overrides["dockerSecretMounts"] == {"token": {"data": "czNjcjN0", "encoding": "utf-8"}}
    assert base64.b64decode(overrides["buildFiles"]["/config/key.bin"]["data"]) == raw


def test_start_job_build_seed_variants(server: Server) -> None:
    with server.client() as sy:
        sy.start_job_build("demo", "migrate")
        sy.start_job_build("demo", "migrate", sha=SHA)
        build = sy.start_job_build(
            "demo", "migrate", sha=SHA, build_arguments={"A": "1"}, target="final"
        )
    assert [r.url.path for r in server.requests] == [f"{JOB}/build"] * 3
    assert server.body(0) == {}
    assert server.body(1) == {"sha": SHA}
    assert server.body(2) == {
        "sha": SHA,
        "overrides": {"buildArguments": {"A": "1"}, "docker": {"dockerfileTarget": "final"}},
    }
    assert build.ref == BuildRef("demo", "joyous-view-6290", job_id="migrate")


def test_idempotency_key_header(server: Server) -> None:
    with server.client() as sy:
        sy.start_service_build("demo", "web", branch="main", idempotency_key="ci-run-42")
        sy.start_job_build("demo", "migrate", idempotency_key="ci-run-43")
    assert server.requests[0].headers["Idempotency-Key"] == "ci-run-42"
    assert server.requests[1].headers["Idempotency-Key"] == "ci-run-43"


def test_create_project_service_and_job_bodies() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        data = {**body, "id": body["name"].lower(), "createdAt": "2024-01-02T03:04:05.006Z"}
        if "/services/" in request.url.path:
            data |= {"projectId": "demo", "serviceType": request.url.path.rsplit("/", 1)[1]}
        if "/jobs/" in request.url.path:
            data |= {"projectId": "demo", "jobType": request.url.path.rsplit("/", 1)[1]}
        return httpx.Response(200, json={"data": data})

    server = Server(handler)
    with server.client() as sy:
        project = sy.create_project("Demo", "a demo", region="europe-west")
        web = sy.create_service(
            "demo", "Web", kind="combined", repo_url="https://git.example/app.git", branch="main"
        )
        builder = sy.create_service(
            "demo",
            "Builder",
            kind="build",
            repo_url="file:///srv/app.git",
            dockerfile_path="/sub/Dockerfile",
            work_dir="/sub",
            build_arguments={"GREETING": "hi"},
            path_ignore_rules=["docs/"],
            is_allow_list=False,
            use_cache=False,
            billing={"deploymentPlan": "nf-compute-10"},
        )
        job = sy.create_job("demo", "Migrate", repo_url="file:///srv/app.git", branch="main")
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("POST", "/v1/projects"),
        ("POST", "/v1/projects/demo/services/combined"),
        ("POST", "/v1/projects/demo/services/build"),
        ("POST", "/v1/projects/demo/jobs/manual"),
    ]
    assert server.body(0) == {"name": "Demo", "description": "a demo", "region": "europe-west"}
    dockerfile = {
        "dockerFilePath": "/Dockerfile",
        "dockerWorkDir": "/",
        "buildkit": {"useCache": True},
    }
    assert server.body(1) == {
        "name": "Web",
        "vcsData": {
            "projectUrl": "https://git.example/app.git",
            "projectType": "self-hosted",
            "projectBranch": "main",
        },
        "buildSettings": {"dockerfile": dockerfile},
    }
    assert server.body(2) == {
        "name": "Builder",
        "vcsData": {"projectUrl": "file:///srv/app.git", "projectType": "self-hosted"},
        "buildSettings": {
            "dockerfile": {
                "dockerFilePath": "/sub/Dockerfile",
                "dockerWorkDir": "/sub",
                "buildkit": {"useCache": False},
            }
        },
        "buildConfiguration": {"pathIgnoreRules": ["docs/"], "isAllowList": False},
        "buildArguments": {"GREETING": "hi"},
        "billing": {"deploymentPlan": "nf-compute-10"},
    }
    assert server.body(3)["vcsData"]["projectBranch"] == "main"
    assert project == Project("demo", "Demo", "a demo", datetime(2024, 1, 2, 3, 4, 5, 6000, UTC))
    assert project.raw["region"] == "europe-west"
    assert isinstance(web, Workload)
    assert (web.id, web.entity, web.kind, web.project_id) == ("web", "service", "combined", "demo")
    assert (builder.kind, job.entity, job.kind) == ("build", "job", "manual")


# --- results -------------------------------------------------------------------------------


def test_build_from_api_parses_every_field() -> None:
    data = build_json(
        status="SUCCESS",
        concluded=True,
        success=True,
        message="Image successfully built",
        registry={"uri": "127.0.0.1:5000/demo/web@sha256:abc"},
        buildConcludedAt=1627487800,
        pullRequestId=5,
        bundleUrl="https://example.com/a.tar",
    )
    build = Build.from_api(data)
    assert build.status == "SUCCESS" and build.concluded and build.success
    assert build.registry_uri == "127.0.0.1:5000/demo/web@sha256:abc"
    assert build.created_at == datetime(2021, 7, 28, 15, 55, 38, 296000, UTC)
    assert build.concluded_at == datetime.fromtimestamp(1627487800, UTC)
    assert build.pull_request_id == 5 and build.bundle_url == "https://example.com/a.tar"
    assert build.message == "Image successfully built"
    assert build.raw == data and build.raw is not data
    assert hash(build) == hash(Build.from_api(data))
    with pytest.raises(ValueError, match="does not know"):
        _ = build.ref


def test_build_from_api_is_lenient_with_northflank_minimal_answer() -> None:
    build = Build.from_api(
        {"id": "joyous-view-6290", "createdAt": "2021-07-28T15:55:38.296Z", "status": "PENDING"}
    )
    assert (build.concluded, build.success, build.sha, build.registry_uri) == (
        False,
        False,
        None,
        None,
    )


def test_get_and_abort_accept_a_build_a_ref_or_ids(server: Server) -> None:
    with server.client() as sy:
        build = sy.start_service_build("demo", "web")
        sy.get_build(build)
        sy.get_build(BuildRef("demo", "b-1", job_id="migrate"))
        sy.get_build("demo", build_id="b-2", service_id="web")
        aborted = sy.abort_build("demo", build_id="b 3", job_id="migrate")
        with pytest.raises(ValueError, match="exactly one"):
            sy.get_build("demo", build_id="b", service_id="web", job_id="migrate")
        with pytest.raises(TypeError):
            sy.get_build(build, build_id="other")  # type: ignore[call-overload]
    assert [(r.method, r.url.raw_path.decode()) for r in server.requests[1:]] == [
        ("GET", f"{SVC}/build/joyous-view-6290"),
        ("GET", f"{JOB}/build/b-1"),
        ("GET", f"{SVC}/build/b-2"),
        ("DELETE", f"{JOB}/build/b%203"),
    ]
    assert aborted.job_id == "migrate" and aborted.service_id is None


# --- pagination ----------------------------------------------------------------------------


def paged_builds(total: int) -> Handler:
    """Newest first, opaque cursors, like the server."""
    ids = [f"build-{n:03d}" for n in range(total, 0, -1)]

    def handler(request: httpx.Request) -> httpx.Response:
        per_page = int(request.url.params["per_page"])
        cursor = request.url.params.get("cursor")
        start = 0 if cursor is None else int(base64.b64decode(cursor))
        page = ids[start : start + per_page]
        pagination: dict[str, Any] = {"hasNextPage": start + per_page < total, "count": len(page)}
        if pagination["hasNextPage"]:
            pagination["cursor"] = base64.b64encode(str(start + per_page).encode()).decode()
        return httpx.Response(
            200,
            json={"data": {"builds": [build_json(i) for i in page]}, "pagination": pagination},
        )

    return handler


def test_list_builds_follows_cursors_across_pages() -> None:
    server = Server(paged_builds(7))
    with server.client() as sy:
        builds = list(sy.list_builds("demo", "web", per_page=3))
    assert [b.id for b in builds] == [f"build-{n:03d}" for n in range(7, 0, -1)]
    assert all(b.ref.service_id == "web" for b in builds)
    params = [dict(r.url.params) for r in server.requests]
    assert params == [
        {"per_page": "3"},
        {"per_page": "3", "cursor": base64.b64encode(b"3").decode()},
        {"per_page": "3", "cursor": base64.b64encode(b"6").decode()},
    ]
    assert {r.url.path for r in server.requests} == {f"{SVC}/build"}


def test_list_builds_of_a_job_is_lazy_and_needs_exactly_one_owner() -> None:
    server = Server(paged_builds(2))
    with server.client() as sy:
        with pytest.raises(ValueError, match="exactly one"):
            sy.list_builds("demo")
        with pytest.raises(ValueError, match="exactly one"):
            sy.list_builds("demo", service_id="web", job_id="migrate")
        builds = sy.list_builds("demo", job_id="migrate")
        assert server.requests == []
        assert next(builds).job_id == "migrate"
    assert server.last.url.path == f"{JOB}/build"


def test_list_projects_falls_back_to_page_numbers_without_cursor() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        projects = [{"id": f"p{page}", "name": f"P{page}"}]
        return httpx.Response(
            200,
            json={
                "data": {"projects": projects},
                "pagination": {"hasNextPage": page < 3, "count": 1},
            },
        )

    server = Server(handler)
    with server.client() as sy:
        assert [p.id for p in sy.list_projects(per_page=1)] == ["p1", "p2", "p3"]
    assert [r.url.params.get("page") for r in server.requests] == [None, "2", "3"]


def test_list_services_and_jobs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.url.path.rsplit("/", 1)[1]
        kind = {"services": {"serviceType": "build"}, "jobs": {"jobType": "manual"}}[key]
        item = {"id": "x", "name": "X", **kind}
        return httpx.Response(
            200, json={"data": {key: [item]}, "pagination": {"hasNextPage": False, "count": 1}}
        )

    with Server(handler).client() as sy:
        (service,) = sy.list_services("demo")
        (job,) = sy.list_jobs("demo")
    assert (service.entity, service.kind, service.project_id) == ("service", "build", "demo")
    assert (job.entity, job.kind) == ("job", "manual")


def test_a_repeated_cursor_stops_the_iteration_with_an_error() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "data": {"builds": [build_json()]},
                "pagination": {"hasNextPage": True, "cursor": "same", "count": 1},
            },
        )

    with Server(handler).client() as sy, pytest.raises(ShipyardError, match="repeated"):
        list(sy.list_builds("demo", "web"))


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 500])
def test_error_answers_raise_shipyard_error(status: int) -> None:
    details = {"sha": "String should have at least 40 characters"}

    def handler(_: httpx.Request) -> httpx.Response:
        error = {"status": status, "message": "sha: too short", "details": details}
        return httpx.Response(status, json={"error": error})

    with Server(handler).client() as sy, pytest.raises(ShipyardError) as caught:
        sy.start_service_build("demo", "web", sha="abc")
    assert (caught.value.status, caught.value.message, caught.value.details) == (
        status,
        "sha: too short",
        details,
    )
    assert str(caught.value) == f"{status}: sha: too short"
    assert type(caught.value) is ShipyardError


def test_non_api_error_answers_and_bad_envelopes() -> None:
    answers = iter(
        [
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(404, json={"detail": "Not Found"}),
            httpx.Response(200, json={"id": "no-envelope"}),
            httpx.Response(200, text="not json"),
            httpx.Response(200, json={"data": {"id": "x"}}),  # a build without status
        ]
    )
    with Server(lambda _: next(answers)).client() as sy:
        with pytest.raises(ShipyardError) as bad_gateway:
            sy.get_project("demo")
        with pytest.raises(ShipyardError) as not_found:
            sy.get_project("demo")
        for _ in range(2):
            with pytest.raises(ShipyardError, match="envelope") as envelope:
                sy.get_project("demo")
            assert envelope.value.status == 200
        with pytest.raises(ShipyardError, match="unexpected object"):
            sy.get_build("demo", build_id="x", service_id="web")
    assert (bad_gateway.value.status, bad_gateway.value.message) == (502, "HTTP 502 Bad Gateway")
    assert (not_found.value.status, not_found.value.details) == (404, {"detail": "Not Found"})


def test_transport_errors_become_shipyard_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with Server(handler).client() as sy, pytest.raises(ShipyardError) as caught:
        sy.create_project("demo")
    error = caught.value
    assert isinstance(error, ShipyardConnectionError) and error.status == 0
    assert "connection refused" in error.message and "POST" in error.message
    assert isinstance(error.details, httpx.ConnectError) and error.__cause__ is error.details


# --- logs ----------------------------------------------------------------------------------


def test_build_logs_range_query() -> None:
    lines = [
        {"containerId": "build-b-1", "log": "==> cloning", "ts": "2024-01-02T03:04:05.006Z"},
        {"containerId": "build-b-1", "log": "==> building", "ts": "2024-01-02T03:04:06.000Z"},
    ]
    server = Server(lambda _: httpx.Response(200, json={"data": lines}))
    with server.client() as sy:
        got = sy.build_logs(
            "demo",
            build_id="b",
            job_id="migrate",
            start_time=datetime(2024, 1, 2, 3, 0, tzinfo=UTC),
            end_time=datetime(2024, 1, 2, 4, 0),  # naive: UTC
            line_limit=10,
            direction="backward",
        )
        sy.build_logs(Build.from_api(build_json("b"), project_id="demo", service_id="web"))
    assert got == [
        LogLine("build-b-1", "==> cloning", datetime(2024, 1, 2, 3, 4, 5, 6000, UTC)),
        LogLine("build-b-1", "==> building", datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC)),
    ]
    assert got[0].raw == lines[0]
    assert server.requests[0].url.path == f"{JOB}/build-logs"
    assert dict(server.requests[0].url.params) == {
        "queryType": "range",
        "buildId": "b",
        "lineLimit": "10",
        "direction": "backward",
        "startTime": "2024-01-02T03:00:00Z",
        "endTime": "2024-01-02T04:00:00Z",
    }
    assert dict(server.requests[1].url.params) == {
        "queryType": "range",
        "buildId": "b",
        "lineLimit": "1000",
        "direction": "forward",
    }


def sse(*lines: str) -> bytes:
    return "".join(
        f"data: {json.dumps({'containerId': 'c', 'log': log, 'ts': '2024-01-02T03:04:05.000Z'})}\n\n"
        for log in lines
    ).encode()


def chunked(payload: bytes, size: int = 7) -> Iterator[bytes]:
    """Chunk boundaries fall inside lines and events."""
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_follow_logs_parses_events_until_end() -> None:
    payload = (
        b": a comment\n\n"
        + sse("==> starting", "==> building")
        + b"event: ping\ndata: {}\n\n"
        + sse("STEP 1/3: FROM busybox")
        + b"event: end\ndata: {}\n\n"
        + sse("after the end is ignored")
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=chunked(payload)
        )

    server = Server(handler)
    with server.client() as sy:
        build = Build.from_api(build_json("b-9"), project_id="demo", service_id="web")
        lines = [line.log for line in sy.follow_logs(build)]
    assert lines == ["==> starting", "==> building", "STEP 1/3: FROM busybox"]
    request = server.last
    assert request.url.path == f"{SVC}/build-logs/stream"
    assert dict(request.url.params) == {"buildId": "b-9"}
    assert request.headers["Accept"] == "text/event-stream"
    assert request.extensions["timeout"]["read"] is None


def test_follow_logs_cut_short_and_error_answers() -> None:
    answers = iter(
        [
            httpx.Response(200, content=sse("==> building")),
            httpx.Response(404, json={"error": {"status": 404, "message": "no build b-0"}}),
        ]
    )
    with Server(lambda _: next(answers)).client() as sy:
        stream = sy.follow_logs("demo", build_id="b-0", service_id="web")
        assert next(stream).log == "==> building"
        with pytest.raises(ShipyardConnectionError, match="before its end"):
            next(stream)
        with pytest.raises(ShipyardError) as caught:
            list(sy.follow_logs("demo", build_id="b-0", service_id="web"))
    assert (caught.value.status, caught.value.message) == (404, "no build b-0")


def test_sse_decoder() -> None:
    decoder = SSEDecoder()
    fed = [
        decoder.decode(line)
        for line in [": hi", "event: end", "data: a", "data:b", "id: 7\r", "", "", "data: x", ""]
    ]
    assert [e for e in fed if e is not None] == [
        ServerSentEvent("end", "a\nb", "7"),
        ServerSentEvent("message", "x", "7"),
    ]


# --- wait ----------------------------------------------------------------------------------


def status_sequence(*statuses: str) -> Handler:
    remaining = list(statuses)

    def handler(_: httpx.Request) -> httpx.Response:
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        concluded = status in {"SUCCESS", "FAILURE", "ABORTED"}
        return httpx.Response(
            200,
            json={
                "data": build_json(status=status, concluded=concluded, success=status == "SUCCESS")
            },
        )

    return handler


def test_wait_polls_until_concluded() -> None:
    server = Server(status_sequence("QUEUED", "CLONING", "BUILDING", "SUCCESS"))
    with server.client() as sy:
        build = sy.wait(BuildRef("demo", "joyous-view-6290", service_id="web"), poll_s=0)
    assert build.status == "SUCCESS" and build.success and build.service_id == "web"
    assert len(server.requests) == 4
    assert {r.url.path for r in server.requests} == {f"{SVC}/build/joyous-view-6290"}


def test_wait_times_out() -> None:
    with (
        Server(status_sequence("BUILDING")).client() as sy,
        pytest.raises(ShipyardTimeoutError) as caught,
    ):
        sy.wait(BuildRef("demo", "b", job_id="migrate"), poll_s=0.01, timeout_s=0.05)
    assert caught.value.status == 0 and isinstance(caught.value, ShipyardError)
    assert isinstance(caught.value.details, Build) and caught.value.details.status == "BUILDING"


# --- async ---------------------------------------------------------------------------------


def test_async_client_start_wait_list_and_follow() -> None:
    statuses = status_sequence("QUEUED", "BUILDING", "SUCCESS")
    pages = paged_builds(5)

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunked(sse("==> building") + b"event: end\ndata: {}\n\n"):
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/build-logs/stream"):
            return httpx.Response(200, content=stream())
        if request.method == "GET" and path.endswith("/build"):
            return pages(request)
        if request.method == "GET":
            return statuses(request)
        return httpx.Response(200, json={"data": build_json()})

    server = Server(handler)

    async def scenario() -> tuple[Build, Build, list[str], list[str]]:
        async with server.async_client() as sy:
            started = await sy.start_service_build(
                "demo", "web", branch="main", build_files={"/a.bin": b"\x01"}, idempotency_key="k"
            )
            done = await sy.wait(started, poll_s=0)
            logs = [line.log async for line in sy.follow_logs(done)]
            ids = [b.id async for b in sy.list_builds("demo", "web", per_page=2)]
            return started, done, logs, ids

    started, done, logs, ids = asyncio.run(scenario())
    assert server.body(0) == {
        "branch": "main",
        "overrides": {"buildFiles": {"/a.bin": {"data": "AQ==", "encoding": "utf-8"}}},
    }
    assert server.requests[0].headers["Idempotency-Key"] == "k"
    assert started.status == "QUEUED" and done.status == "SUCCESS"
    assert logs == ["==> building"]
    assert ids == [f"build-{n:03d}" for n in range(5, 0, -1)]


def test_async_client_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"error": {"status": 409, "message": "name taken"}})
        raise httpx.ReadTimeout("timed out", request=request)

    async def scenario() -> tuple[ShipyardError, ShipyardError]:
        async with Server(handler).async_client() as sy:
            try:
                await sy.create_project("demo")
            except ShipyardError as exc:
                conflict = exc
            try:
                await sy.get_project("demo")
            except ShipyardError as exc:
                timeout = exc
            return conflict, timeout

    conflict, timeout = asyncio.run(scenario())
    assert (conflict.status, conflict.message) == (409, "name taken")
    assert isinstance(timeout, ShipyardConnectionError) and timeout.status == 0
