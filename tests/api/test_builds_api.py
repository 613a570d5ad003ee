"""List, get, abort, idempotency, path forms, OpenAPI, and what a started build persists."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient

from shipyard.builds import service as build_service
from shipyard.builds.secret_files import SecretFile
from shipyard.settings import Settings
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store
from shipyard.store.crypto import SecretBox
from tests.api.test_start_build_rules import assert_error
from tests.conftest import SHA


def svc_path(targets: dict[str, str], kind: str = "build") -> str:
    return f"/v1/projects/{targets['project']}/services/{targets[kind]}"


def test_list_newest_first_with_cursor(client: TestClient, targets: dict[str, str]) -> None:
    path = svc_path(targets)
    ids = [
        client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"] for _ in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"per_page": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get(f"{path}/build", params=params).json()
        seen += [b["id"] for b in body["data"]["builds"]]
        if not body["pagination"]["hasNextPage"]:
            break
        cursor = body["pagination"]["cursor"]
    assert seen == list(reversed(ids))
    page2 = client.get(f"{path}/build", params={"per_page": 2, "page": 2}).json()["data"]["builds"]
    assert [b["id"] for b in page2] == list(reversed(ids))[2:4]


def test_get_and_abort(client: TestClient, targets: dict[str, str]) -> None:
    path = svc_path(targets)
    build = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]
    got = client.get(f"{path}/build/{build['id']}").json()["data"]
    assert got == {**build, "success": False} | got
    assert "message" not in got  # optional strings are omitted, not null
    aborted = client.delete(f"{path}/build/{build['id']}").json()["data"]
    assert (
        aborted["status"] == "ABORTED"
        and aborted["concluded"] is True
        and aborted["success"] is False
    )
    assert isinstance(aborted["buildConcludedAt"], int)
    assert_error(client.delete(f"{path}/build/{build['id']}"), 409)
    assert_error(client.delete(f"{path}/build/nope-nope-0000"), 404)


def test_job_builds(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/jobs/{targets['job']}"
    build = client.post(f"{path}/build", json={"sha": SHA}).json()["data"]
    assert build["sha"] == SHA and build["branch"] == "main"
    assert client.get(f"{path}/build/{build['id']}").json()["data"]["id"] == build["id"]
    assert [b["id"] for b in client.get(f"{path}/build").json()["data"]["builds"]] == [build["id"]]
    assert client.delete(f"{path}/build/{build['id']}").json()["data"]["status"] == "ABORTED"


def test_idempotency_key(client: TestClient, targets: dict[str, str]) -> None:
    path = svc_path(targets)
    headers = {"Idempotency-Key": "deploy-42"}
    first = client.post(f"{path}/build", json={"branch": "main"}, headers=headers).json()["data"]
    again = client.post(f"{path}/build", json={"branch": "main"}, headers=headers).json()["data"]
    assert again["id"] == first["id"]
    assert len(client.get(f"{path}/build").json()["data"]["builds"]) == 1
    assert_error(
        client.post(f"{path}/build", json={"branch": "dev"}, headers=headers),
        409,
        "Idempotency-Key",
    )
    other = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]
    assert other["id"] != first["id"]


def test_team_scoped_and_double_slash_paths(client: TestClient, targets: dict[str, str]) -> None:
    path = svc_path(targets)
    build = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]
    team = path.replace("/v1/projects", "/v1/teams/my-team/projects")
    assert client.get(f"{team}/build/{build['id']}").json()["data"]["id"] == build["id"]
    base = str(client.base_url)
    assert client.get(f"{base}/{path}/build/{build['id']}").json()["data"]["id"] == build["id"]


def test_openapi_publishes_both_body_variants(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/projects/{projectId}/services/{serviceId}/build"]["post"][
        "requestBody"
    ]
    variants = body["content"]["application/json"]["schema"]["anyOf"]
    # The seed's two, plus Shipyard's own upload variant (``uploadId``).
    assert {v["$ref"].rsplit("/", 1)[1] for v in variants} == {
        "StartBuildFromBundle",
        "StartBuildFromGit",
        "StartBuildFromUpload",
    }
    assert "/v1/projects/{projectId}/jobs/{jobId}/build" in spec["paths"]


def test_request_is_persisted_completely_and_encrypted(
    client: TestClient, targets: dict[str, str]
) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    path = svc_path(targets)
    overrides = {
        "buildArguments": {"ARG_ONE": "arg-value-visible-only-decrypted"},
        "buildFiles": {
            "/conf/app.env": {"data": "RklMRS1TRUNSRVQtQ09OVEVOVA==", "encoding": "utf-8"}
        },
        "dockerSecretMounts": {"npm": {"data": "TlBNLVRPS0VOLVNFQ1JFVA==", "encoding": "base64"}},
        "docker": {
            "dockerFilePath": "/build/Dockerfile",
            "dockerWorkDir": "/build",
            "dockerfileTarget": "prod",
        },
    }
    build_id = client.post(
        f"{path}/build", json={"pullRequestId": 12, "sha": SHA, "overrides": overrides}
    ).json()["data"]["id"]
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        workload = workload_store.get_by_id(session, build.workload_id)
        request = build_service.load_request(state.box, workload, build)
    assert request.source.pull_request_id == 12 and request.source.sha == SHA
    o = request.overrides
    assert o.build_arguments == {"ARG_ONE": "arg-value-visible-only-decrypted"}
    assert o.build_files == {"/conf/app.env": SecretFile(b"FILE-SECRET-CONTENT", "utf-8")}
    assert o.secret_mounts == {"npm": SecretFile(b"NPM-TOKEN-SECRET", "base64")}
    assert (o.docker.dockerfile_path, o.docker.work_dir, o.docker.target) == (
        "/build/Dockerfile",
        "/build",
        "prod",
    )
    db = b"".join(p.read_bytes() for p in state.settings.data_dir.glob("shipyard.db*"))
    for secret in (
        b"arg-value-visible-only-decrypted",
        b"FILE-SECRET-CONTENT",
        b"NPM-TOKEN-SECRET",
        b"TlBNLVRPS0VOLVNFQ1JFVA==",
    ):
        assert secret not in db
    # Nor in any response.
    listed = client.get(f"{path}/build").text
    assert "FILE-SECRET-CONTENT" not in listed and "arg-value" not in listed


def test_stored_build_arguments_are_merged_under_overrides(
    client: TestClient, factory: object
) -> None:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    client.post("/v1/projects", json={"name": "p"})
    client.post("/v1/projects/p/services/build", json={
        "name": "s", "vcsData": {"projectUrl": "file:///r"}, "buildArguments": {"A": "stored", "B": "stored"},
    })  # fmt: skip
    build_id = client.post(
        "/v1/projects/p/services/s/build",
        json={"branch": "main", "overrides": {"buildArguments": {"B": "override"}}},
    ).json()["data"]["id"]
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        workload = workload_store.get_by_id(session, build.workload_id)
        request = build_service.load_request(state.box, workload, build)
    assert request.overrides.build_arguments == {"A": "stored", "B": "override"}


def test_request_fingerprint_is_keyed(client: TestClient, targets: dict[str, str]) -> None:
    """A 4-digit secret in the body must not be recoverable from the stored digest by
    hashing the 10 000 candidates: the digest is an HMAC under the server's key."""
    path = svc_path(targets)
    headers = {"Idempotency-Key": "pin"}
    body = {"branch": "main", "overrides": {"buildArguments": {"PIN": "4821"}}}
    first = client.post(f"{path}/build", json=body, headers=headers).json()["data"]
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        stored = build_store.get_any(session, first["id"]).request_fingerprint
    unkeyed = {
        hashlib.sha256(
            json.dumps(
                ["service", {**body, "overrides": {"buildArguments": {"PIN": f"{pin:04d}"}}}],
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
        ).hexdigest()
        for pin in range(10_000)
    }
    assert stored not in unkeyed
    expected = {"purpose": "idempotency", "entity": "service", "body": body}
    assert stored == state.box.fingerprint(expected)
    assert stored != SecretBox("another key").fingerprint(expected)
    # Behaviour unchanged: same key and body → the same build; another body → 409.
    again = client.post(f"{path}/build", json=body, headers=headers).json()["data"]
    assert again["id"] == first["id"]
    other = {"branch": "main", "overrides": {"buildArguments": {"PIN": "4822"}}}
    assert_error(client.post(f"{path}/build", json=other, headers=headers), 409, "Idempotency-Key")


def test_bundle_url_secrets_are_never_shown_and_stored_sealed(
    client: TestClient, targets: dict[str, str], settings: Settings
) -> None:
    path = svc_path(targets)
    url = "https://deploy:hunter22@bundles.example.com/app.tgz?X-Amz-Signature=5ig5ig&token=t0k3n"
    shown = "https://***@bundles.example.com/app.tgz?***"
    started = client.post(f"{path}/build", json={"bundleUrl": url}).json()["data"]
    assert started["bundleUrl"] == shown
    assert client.get(f"{path}/build/{started['id']}").json()["data"]["bundleUrl"] == shown
    listed = client.get(f"{path}/build").json()["data"]["builds"]
    assert [b["bundleUrl"] for b in listed] == [shown]
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        build = build_store.get_any(session, started["id"])
        assert build.bundle_url == shown
        workload = workload_store.get_by_id(session, build.workload_id)
        # Only the fetch sees the real URL.
        assert build_service.load_request(state.box, workload, build).source.bundle_url == url
    state.sessions.kw["bind"].dispose()  # checkpoint SQLite's WAL into the file
    for secret in ("hunter22", "5ig5ig", "t0k3n"):
        for f in settings.data_dir.rglob("shipyard.db*"):
            assert secret.encode() not in f.read_bytes(), f


def test_bundle_url_of_a_build_queued_before_sealing_is_redacted_and_still_fetched(
    client: TestClient, targets: dict[str, str]
) -> None:
    path = svc_path(targets)
    started = client.post(f"{path}/build", json={"bundleUrl": "https://h/a.tar"}).json()["data"]
    raw = "https://u:pw@h/a.tar?sig=s3cr3t"
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        build = build_store.get_any(session, started["id"])
        build.bundle_url, build.bundle_url_enc = raw, None  # as migration 0004 leaves it
        session.commit()
        workload = workload_store.get_by_id(session, build.workload_id)
        assert build_service.load_request(state.box, workload, build).source.bundle_url == raw
    got = client.get(f"{path}/build/{started['id']}").json()["data"]
    assert got["bundleUrl"] == "https://***@h/a.tar?***"


def test_inline_dockerfile_is_accepted_stored_and_loaded(
    client: TestClient, targets: dict[str, str]
) -> None:
    from shipyard.builds.request import MAX_DOCKERFILE_CONTENTS_BYTES

    state = client.app.state.shipyard  # type: ignore[attr-defined]
    path = svc_path(targets)
    inline = "FROM scratch\n# é\r\nCOPY . /x\n"
    body = {"branch": "main", "overrides": {"docker": {"dockerfileContents": inline}}}
    build_id = client.post(f"{path}/build", json=body).json()["data"]["id"]
    plain_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        assert build.dockerfile_contents == inline
        workload = workload_store.get_by_id(session, build.workload_id)
        request = build_service.load_request(state.box, workload, build)
        plain = build_service.load_request(
            state.box, workload, build_store.get_any(session, plain_id)
        )
    assert request.overrides.docker.dockerfile_contents == inline
    assert request.overrides.docker.dockerfile_path == "/Dockerfile"  # the stored one, unused
    assert plain.overrides.docker.dockerfile_contents is None
    # Jobs too (the Python SDK's StartJobBuildRequestOverridesOverridesDocker).
    job = f"/v1/projects/{targets['project']}/jobs/{targets['job']}/build"
    r = client.post(job, json={"overrides": {"docker": {"dockerfileContents": inline}}})
    assert r.status_code == 200, r.text
    # Bounded in UTF-8 bytes; never empty; a string.
    big = "#" + "é" * (MAX_DOCKERFILE_CONTENTS_BYTES // 2)
    for bad in (big, "", 5):
        body = {"branch": "main", "overrides": {"docker": {"dockerfileContents": bad}}}
        assert_error(client.post(f"{path}/build", json=body), 400, "dockerfileContents")
    fits = "#" + "x" * (MAX_DOCKERFILE_CONTENTS_BYTES - 1)
    body = {"branch": "main", "overrides": {"docker": {"dockerfileContents": fits}}}
    assert client.post(f"{path}/build", json=body).status_code == 200


def test_inline_dockerfile_is_part_of_the_reuse_key(
    client: TestClient, targets: dict[str, str]
) -> None:
    from shipyard.builds.request import (
        BuildRequest,
        DockerOverrides,
        Overrides,
        SourceKind,
        SourceSpec,
    )
    from shipyard.executors.local import reuse_key_of
    from shipyard.pipeline.run import BuildJob

    box = client.app.state.shipyard.box  # type: ignore[attr-defined]

    def key(contents: str | None) -> str:
        request = BuildRequest(
            SourceSpec(SourceKind.GIT, branch="main"),
            Overrides(docker=DockerOverrides(dockerfile_path="/D", dockerfile_contents=contents)),
        )
        job = BuildJob(build_id="b", attempt=1, project_id="p", workload_slug="s",
                       repository_url="https://example.com/r.git", request=request,
                       use_cache=True, path_rules=None)  # fmt: skip
        return reuse_key_of(box, job)

    assert len({key(None), key("FROM scratch\n"), key("FROM scratch\n\n")}) == 3
