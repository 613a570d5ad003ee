"""Every request rule of the seeds and CONTRACT.md: a 400 in the error shape naming the field."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SHA


def post(client: TestClient, targets: dict[str, str], kind: str, body: Any, **kw: Any) -> Any:
    p = targets["project"]
    path = (
        f"/v1/projects/{p}/jobs/{targets['job']}/build"
        if kind == "job"
        else f"/v1/projects/{p}/services/{targets[kind]}/build"
    )
    return client.post(path, json=body, **kw)


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert field in error["message"] or field in str(error.get("details")), error
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("build", {"branch": "main", "sha": "abc"}, "sha"),
        ("build", {"branch": "main", "sha": SHA + "0"}, "sha"),
        ("build", {"branch": "main", "sha": "Z" * 40}, "sha"),
        ("combined", {"sha": "g" * 40}, "sha"),
        ("job", {"sha": "123"}, "sha"),
        ("build", {}, "branch"),
        ("build", {"sha": SHA}, "pullRequestId"),
        ("build", {"branch": "main", "pullRequestId": 4}, "pullRequestId"),
        ("combined", {"branch": "main"}, "branch"),
        ("combined", {"pullRequestId": 3}, "pullRequestId"),
        ("job", {"branch": "main"}, "branch"),
        ("job", {"pullRequestId": 3}, "pullRequestId"),
        ("job", {"bundleUrl": "https://example.com/a.tar"}, "bundleUrl"),
        ("build", {"pullRequestId": 0}, "pullRequestId"),
        ("build", {"pullRequestId": "seven"}, "pullRequestId"),
        ("build", {"branch": "-upload-pack=evil"}, "branch"),
        ("build", {"branch": "a..b"}, "branch"),
        ("build", {"branch": "main", "bogus": 1}, "bogus"),
        ("build", {"bundleUrl": "ftp://example.com/a.tar"}, "bundleUrl"),
        ("build", {"bundleUrl": "https://e.com/a.tar", "sha": "abc"}, "sha"),
        ("build", {"bundleUrl": "https://e.com/a.tar", "pullRequestId": 2}, "pullRequestId"),
    ],
)
def test_source_rules(
    client: TestClient, targets: dict[str, str], kind: str, body: Any, field: str
) -> None:
    assert_error(post(client, targets, kind, body), 400, field)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"buildArguments": {"BAD KEY": "x"}}, "buildArguments"),
        ({"buildArguments": {"A": 1}}, "buildArguments"),
        ({"buildArguments": ["A"]}, "buildArguments"),
        ({"buildFiles": {"relative/path": {"data": "x"}}}, "buildFiles"),
        ({"buildFiles": {"/a/../etc/passwd": {"data": "x"}}}, "buildFiles"),
        ({"buildFiles": {"/a/b": {"data": "eA==", "encoding": ""}}}, "encoding"),
        ({"buildFiles": {"/a/b": {"data": "%%%", "encoding": "base64"}}}, "base64"),
        # data is always base64, whatever the encoding says (Northflank's form)
        ({"buildFiles": {"/a/b": {"data": "not base64!", "encoding": "utf-8"}}}, "/a/b.data"),
        ({"dockerSecretMounts": {"tok": {"data": "x"}}}, "dockerSecretMounts.tok.data"),
        ({"buildFiles": {"/a/b": "plain string"}}, "buildFiles"),
        ({"buildFiles": {"/a/b": {"encoding": "utf-8"}}}, "data"),
        ({"dockerSecretMounts": {"bad id!": {"data": "x"}}}, "dockerSecretMounts"),
        ({"dockerSecretMounts": {"-x": {"data": "x"}}}, "dockerSecretMounts"),
        ({"docker": {"dockerFilePath": "Dockerfile"}}, "dockerFilePath"),
        ({"docker": {"dockerFilePath": "/"}}, "dockerFilePath"),
        ({"docker": {"dockerFilePath": "/../Dockerfile"}}, "dockerFilePath"),
        ({"docker": {"dockerWorkDir": "app"}}, "dockerWorkDir"),
        ({"docker": {"dockerWorkDir": "/a/../.."}}, "dockerWorkDir"),
        ({"docker": {"dockerfileTarget": "build stage"}}, "dockerfileTarget"),
        ({"docker": {"unknown": 1}}, "unknown"),
        ({"nonsense": {}}, "nonsense"),
    ],
)
@pytest.mark.parametrize("kind", ["build", "job"])
def test_override_rules(
    client: TestClient, targets: dict[str, str], kind: str, overrides: Any, field: str
) -> None:
    body = {"overrides": overrides}
    if kind == "build":
        body["branch"] = "main"
    assert_error(post(client, targets, kind, body), 400, field)


def test_secret_size_limit(client: TestClient, targets: dict[str, str]) -> None:
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    body = {"branch": "main", "overrides": {"buildFiles": {"/big": {"data": big}}}}
    assert_error(post(client, targets, "build", body), 400, "/big")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"", b"null"])
def test_malformed_bodies_are_400(client: TestClient, targets: dict[str, str], raw: bytes) -> None:
    p, s = targets["project"], targets["build"]
    response = client.post(
        f"/v1/projects/{p}/services/{s}/build",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400)


def test_valid_variants_are_accepted(client: TestClient, targets: dict[str, str]) -> None:
    cases = [
        ("build", {"branch": "main"}),
        ("build", {"branch": "feature/x", "sha": SHA}),
        ("build", {"pullRequestId": 7}),
        ("combined", {}),
        ("combined", {"sha": SHA}),
        ("build", {"bundleUrl": "https://example.com/archive.tar"}),
        ("combined", {"bundleUrl": "https://example.com/a.tgz", "branch": "main", "sha": SHA}),
        ("job", {}),
        ("job", {"sha": SHA}),
        (
            "job",
            {
                "sha": SHA,
                "overrides": {
                    "buildArguments": {"ARGUMENT_1": "abcdef", "ARGUMENT_2": "12345"},
                    "buildFiles": {"/dir/fileName": {"data": "VGhpcw==", "encoding": "utf-8"}},
                    "dockerSecretMounts": {
                        "example-secret-mount_1": {"data": "VGhpcw==", "encoding": "base64"}
                    },
                    "docker": {
                        "dockerFilePath": "/Dockerfile",
                        "dockerWorkDir": "/",
                        "dockerfileTarget": "final",
                    },
                },
            },
        ),
    ]
    for kind, body in cases:
        response = post(client, targets, kind, body)
        assert response.status_code == 200, (body, response.text)
        data = response.json()["data"]
        assert data["status"] == "QUEUED" and data["concluded"] is False


def test_unknown_targets_are_404(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    assert_error(client.post("/v1/projects/nope/services/x/build", json={}), 404)
    assert_error(client.post(f"/v1/projects/{p}/services/nope/build", json={}), 404)
    assert_error(client.post(f"/v1/projects/{p}/jobs/nope/build", json={}), 404)
    # A job id is not a service id.
    assert_error(client.post(f"/v1/projects/{p}/services/{targets['job']}/build", json={}), 404)
    assert_error(
        client.get(f"/v1/projects/{p}/services/{targets['build']}/build/no-such-0000"), 404
    )


def test_oversized_body_is_413(client: TestClient, targets: dict[str, str]) -> None:
    from shipyard.api.limits import MAX_BODY_BYTES

    p, s = targets["project"], targets["build"]
    big = b'{"branch": "main", "x": "' + b"a" * MAX_BODY_BYTES + b'"}'
    assert_error(
        client.post(
            f"/v1/projects/{p}/services/{s}/build",
            content=big,
            headers={"Content-Type": "application/json"},
        ),
        413,
    )


def test_oversized_chunked_body_is_413(client: TestClient, targets: dict[str, str]) -> None:
    from shipyard.api.limits import MAX_BODY_BYTES

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"branch": "main", "x": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    p, s = targets["project"], targets["build"]
    response = client.post(
        f"/v1/projects/{p}/services/{s}/build",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 413)
