"""Stored build arguments / files / secret mounts: Northflank's form (``data`` base64,
``encoding`` kept), encrypted, shown only with the permission, templated, merged under a
build's overrides; create-time secrets are the same stored set and never echoed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.builds import service as build_service
from shipyard.builds.permissions import Permission
from shipyard.builds.request import BuildRequest
from shipyard.builds.secret_files import SecretFile
from shipyard.store import builds as build_store
from shipyard.store import workloads as workload_store
from tests.api.test_auth import make_token
from tests.api.test_start_build_rules import assert_error

# The seeds' / js-client's example value, verbatim.
SEED_DATA = "VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU="
SEED_TEXT = "This is an example with a templated ${NODE_ENV} variable"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def db_bytes(client: TestClient) -> bytes:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    return b"".join(p.read_bytes() for p in state.settings.data_dir.glob("shipyard.db*"))


def request_of(client: TestClient, build_id: str) -> BuildRequest:
    state = client.app.state.shipyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        build = build_store.get_any(session, build_id)
        workload = workload_store.get_by_id(session, build.workload_id)
        return build_service.load_request(state.box, workload, build)


def test_get_and_replace(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build-arguments"
    empty = {"buildArguments": {}, "buildFiles": {}, "dockerSecretMounts": {}}
    assert client.get(path).json()["data"] == empty
    body = {
        "buildArguments": {"NPM_TOKEN": "tok-value-123", "MODE": "prod"},
        "buildFiles": {
            "/etc/app.conf": {"data": b64("conf-secret-body")},  # encoding defaults to utf-8
            "/dir/fileName": {"data": SEED_DATA, "encoding": "utf-8"},
            "/latin": {"data": b64("caf\xe9".encode("latin-1")), "encoding": "latin-1"},
        },
        "dockerSecretMounts": {"ssh": {"data": "c3NoLWtleQ==", "encoding": "base64"}},
    }
    updated = client.post(path, json=body)
    assert updated.status_code == 200, updated.text
    assert "tok-value-123" not in updated.text and SEED_DATA not in updated.text
    got = client.get(path).json()["data"]
    # Exactly what was sent: data as given, the encoding kept (a free string).
    assert got == {
        "buildArguments": body["buildArguments"],
        "buildFiles": {**body["buildFiles"], "/etc/app.conf": {
            "data": b64("conf-secret-body"), "encoding": "utf-8"
        }},
        "dockerSecretMounts": body["dockerSecretMounts"],
    }  # fmt: skip
    assert client.get(path, params={"show": "inherited"}).json()["data"] == empty
    assert client.get(path, params={"show": "this"}).json()["data"] == got
    assert_error(
        client.post(path, json={"buildArguments": {"BAD KEY": "x"}}), 400, "buildArguments"
    )
    assert_error(client.post(path, json={"docker": {}}), 400, "docker")
    db = db_bytes(client)
    assert b"tok-value-123" not in db and b"conf-secret-body" not in db
    assert SEED_DATA.encode() not in db and b"example with a templated" not in db


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ({"buildFiles": {"/a": {"data": "plain text, not base64"}}}, "buildFiles./a.data"),
        ({"buildFiles": {"/a": {"data": "abc", "encoding": "utf-8"}}}, "buildFiles./a.data"),
        ({"dockerSecretMounts": {"m": {"data": "%%"}}}, "dockerSecretMounts.m.data"),
        ({"buildFiles": {"/a": {"data": "eA==", "encoding": ""}}}, "encoding"),
        ({"buildFiles": {"/a": {"data": "eA==", "extra": 1}}}, "extra"),
    ],
)
def test_invalid_secret_content_is_a_400_naming_the_field(
    client: TestClient, targets: dict[str, str], files: dict[str, Any], field: str
) -> None:
    p, s = targets["project"], targets["build"]
    assert_error(client.post(f"/v1/projects/{p}/services/{s}/build-arguments", json=files), 400, field)  # fmt: skip
    body = {"name": "bad", "vcsData": {"projectUrl": "file:///x", "projectBranch": "main"}}
    assert_error(client.post(f"/v1/projects/{p}/services/combined", json={**body, **files}), 400, field)  # fmt: skip
    start = {"branch": "main", "overrides": files}
    assert_error(client.post(f"/v1/projects/{p}/services/{s}/build", json=start), 400, field)


def test_replace_templated_values(client: TestClient, targets: dict[str, str]) -> None:
    path = f"/v1/projects/{targets['project']}/jobs/{targets['job']}/build-arguments"
    client.post(path, json={
        "buildArguments": {"NODE_ENV": "production"},
        "buildFiles": {"/dir/fileName": {"data": SEED_DATA, "encoding": "utf-8"},
                       "/other": {"data": b64("${UNKNOWN} and $NODE_ENV stay"), "encoding": "utf-8"}},
        "dockerSecretMounts": {"m": {"data": b64("env=${NODE_ENV}")}},
    })  # fmt: skip
    raw = client.get(path).json()["data"]
    assert raw["buildFiles"]["/dir/fileName"] == {"data": SEED_DATA, "encoding": "utf-8"}
    for flag in ("true", "1"):
        got = client.get(path, params={"replaceTemplatedValues": flag}).json()["data"]
        assert got["buildFiles"]["/dir/fileName"] == {
            "data": b64("This is an example with a templated production variable"),
            "encoding": "utf-8",
        }
        assert got["buildFiles"]["/other"] == raw["buildFiles"]["/other"]  # unknown: as is
        assert got["dockerSecretMounts"]["m"]["data"] == b64("env=production")
        assert got["buildArguments"] == {"NODE_ENV": "production"}
    assert client.get(path, params={"replaceTemplatedValues": "false"}).json()["data"] == raw


def test_details(client: TestClient, targets: dict[str, str]) -> None:
    for entity, slug in (("services", targets["combined"]), ("jobs", targets["job"])):
        base = f"/v1/projects/{targets['project']}/{entity}/{slug}/build-arguments"
        assert client.get(f"{base}/details").json()["data"] == {
            "buildArguments": {},
            "buildFiles": {},
        }
        client.post(base, json={
            "buildArguments": {"MY_VARIABLE_NAME": "abcdef123456"},
            "buildFiles": {"/dir/fileName": {"data": SEED_DATA, "encoding": "utf-8"}},
        })  # fmt: skip
        # js-client's GetServiceBuildargumentdetailsResult: value + overriding per key.
        assert client.get(f"{base}/details").json()["data"] == {
            "buildArguments": {"MY_VARIABLE_NAME": {"value": "abcdef123456", "overriding": []}},
            "buildFiles": {
                "/dir/fileName": {
                    "value": {"data": SEED_DATA, "encoding": "utf-8"},
                    "overriding": [],
                }
            },
        }


def test_permissions(client: TestClient, targets: dict[str, str]) -> None:
    for entity, slug, read in (
        ("jobs", targets["job"], Permission.JOBS_READ),
        ("services", targets["build"], Permission.SERVICES_READ),
    ):
        path = f"/v1/projects/{targets['project']}/{entity}/{slug}/build-arguments"
        reader = {"Authorization": f"Bearer {make_token(client, [read])}"}
        assert_error(client.get(path, headers=reader), 403)
        assert_error(client.get(f"{path}/details", headers=reader), 403)
        assert_error(client.post(path, json={}, headers=reader), 403)
        assert_error(client.get(path.replace(slug, "nope")), 404)
        assert_error(client.get(f"{path.replace(slug, 'nope')}/details"), 404)
    secrets = make_token(client, [Permission.JOB_SECRETS_READ])
    path = f"/v1/projects/{targets['project']}/jobs/{targets['job']}/build-arguments/details"
    assert client.get(path, headers={"Authorization": f"Bearer {secrets}"}).status_code == 200


def test_stored_values_are_merged_under_overrides(
    client: TestClient, targets: dict[str, str]
) -> None:
    svc = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    client.post(f"{svc}/build-arguments", json={
        "buildArguments": {"A": "stored", "B": "stored"},
        "buildFiles": {"/f1": {"data": b64("stored-file ${B}")}, "/f2": {"data": b64("stored")}},
        "dockerSecretMounts": {"s1": {"data": b64("stored-secret ${A}"), "encoding": "ascii"}},
    })  # fmt: skip
    build_id = client.post(f"{svc}/build", json={"branch": "main", "overrides": {
        "buildArguments": {"B": "override"},
        "buildFiles": {"/f2": {"data": b64("override-file ${A}/${B}")}},
    }}).json()["data"]["id"]  # fmt: skip
    o = request_of(client, build_id).overrides
    assert o.build_arguments == {"A": "stored", "B": "override"}
    # Templated from the build's effective arguments: the override's B reaches a stored file.
    assert o.build_files == {
        "/f1": SecretFile(b"stored-file override"),
        "/f2": SecretFile(b"override-file stored/override"),
    }
    assert o.secret_mounts == {"s1": SecretFile(b"stored-secret stored", "ascii")}


def test_seed_example_decodes_and_templates(client: TestClient, targets: dict[str, str]) -> None:
    svc = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    seed = {"data": SEED_DATA, "encoding": "utf-8"}
    plain = client.post(f"{svc}/build", json={"branch": "main", "overrides": {
        "buildFiles": {"/dir/fileName": seed}, "dockerSecretMounts": {"example-secret-mount_1": seed},
    }}).json()["data"]["id"]  # fmt: skip
    o = request_of(client, plain).overrides
    # No NODE_ENV build argument: the text is the decoded seed, the template left as written.
    assert o.build_files["/dir/fileName"].data.decode() == SEED_TEXT
    assert o.secret_mounts["example-secret-mount_1"].data.decode() == SEED_TEXT
    templated = client.post(f"{svc}/build", json={"branch": "main", "overrides": {
        "buildArguments": {"NODE_ENV": "staging"},
        "buildFiles": {"/dir/fileName": seed}, "dockerSecretMounts": {"example-secret-mount_1": seed},
    }}).json()["data"]["id"]  # fmt: skip
    o = request_of(client, templated).overrides
    text = "This is an example with a templated staging variable"
    assert o.build_files["/dir/fileName"] == SecretFile(text.encode(), "utf-8")
    assert o.secret_mounts["example-secret-mount_1"] == SecretFile(text.encode(), "utf-8")
    assert text.encode() in o.secret_values()  # the redactor masks what the build sees


def test_binary_and_non_text_encodings_are_not_templated(
    client: TestClient, targets: dict[str, str]
) -> None:
    svc = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    binary = b"\xff\xfe${A}\x00"
    build_id = client.post(f"{svc}/build", json={"branch": "main", "overrides": {
        "buildArguments": {"A": "x"},
        "buildFiles": {"/bin": {"data": b64(binary)},
                       "/b64": {"data": b64("${A}"), "encoding": "base64"},
                       "/odd": {"data": b64("${A}"), "encoding": "no-such-codec"},
                       "/u16": {"data": b64("${A}".encode("utf-16")), "encoding": "utf-16"}},
    }}).json()["data"]["id"]  # fmt: skip
    files = request_of(client, build_id).overrides.build_files
    assert files["/bin"].data == binary  # not utf-8 text: byte for byte
    assert files["/b64"].data == b"${A}" and files["/odd"].data == b"${A}"
    assert files["/u16"].data == "x".encode("utf-16")  # templated in its own encoding


def test_create_time_secrets_are_sealed_used_and_never_echoed(
    client: TestClient, targets: dict[str, str]
) -> None:
    p = targets["project"]
    body = {
        "name": "with-secrets",
        "vcsData": {"projectUrl": "file:///nowhere", "projectBranch": "main"},
        "buildArguments": {"NODE_ENV": "create-time-arg-value"},
        "buildFiles": {"/dir/fileName": {"data": SEED_DATA, "encoding": "utf-8"},
                       "/keep": {"data": b64("create-time-file-body")}},
        "dockerSecretMounts": {"mnt": {"data": b64("create-time-mount-body")}},
    }  # fmt: skip
    for kind, entity in (("services/combined", "services"), ("jobs/manual", "jobs")):
        created = client.post(f"/v1/projects/{p}/{kind}", json=body)
        assert created.status_code == 200, created.text
        shown = [
            created.text,
            client.get(f"/v1/projects/{p}/{entity}/with-secrets").text,
            client.get(f"/v1/projects/{p}/{entity}").text,
        ]
        for text in shown:
            for secret in ("buildFiles", "dockerSecretMounts", SEED_DATA, "create-time"):
                assert secret not in text, (secret, text)
        base = f"/v1/projects/{p}/{entity}/with-secrets"
        # They are the workload's stored set: GET build-arguments returns what was sent.
        got = client.get(f"{base}/build-arguments").json()["data"]
        assert got["buildFiles"]["/dir/fileName"] == {"data": SEED_DATA, "encoding": "utf-8"}
        assert got["dockerSecretMounts"] == {"mnt": {"data": b64("create-time-mount-body"), "encoding": "utf-8"}}  # fmt: skip
        # … and used, under the build's overrides (override wins per path).
        build_id = client.post(f"{base}/build", json={"overrides": {
            "buildFiles": {"/keep": {"data": b64("overridden")}},
        }}).json()["data"]["id"]  # fmt: skip
        o = request_of(client, build_id).overrides
        assert o.build_files == {
            "/dir/fileName": SecretFile(
                b"This is an example with a templated create-time-arg-value variable"
            ),
            "/keep": SecretFile(b"overridden"),
        }
        assert o.secret_mounts == {"mnt": SecretFile(b"create-time-mount-body")}
    db = db_bytes(client)
    for secret in (b"create-time-file-body", b"create-time-mount-body", SEED_DATA.encode()):
        assert secret not in db and base64.b64encode(secret) not in db
