"""Forged, overflowing or malformed pagination cursors are the caller's 400, on every list
endpoint that reads one (hostile-tenant finding: ``{"o": 10**30}`` reached the database as
an OFFSET and came back as a 500)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_start_build_rules import assert_error


def forged(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


CURSORS = [
    forged({"o": 10**30}),
    forged({"o": 2**63}),
    forged({"o": -1}),
    forged({"o": 1.5}),
    forged({"o": "0"}),
    forged({"o": True}),
    forged({"o": None}),
    forged({"c": "2024-01-01T00:00:00+00:00", "i": "x" * 300}),
    forged({"c": "99999-01-01T00:00:00", "i": "x"}),
    forged({"c": 10**30, "i": 1}),
    forged({"c": ["a"], "i": {"x": 1}}),
    forged({}),
    forged([1, 2]),
    forged("o"),
    forged(10**400 // 10**395),
    "%%%%",
    "not base64 at all!",
    "é∑" * 10,
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    base64.urlsafe_b64encode(b"[" * 300 + b"]" * 300).decode()[:512],
    base64.urlsafe_b64encode(b'{"o":' + b"9" * 350 + b"}").decode(),
]


def list_paths(targets: dict[str, str]) -> list[str]:
    p = targets["project"]
    return [
        "/v1/projects",
        f"/v1/projects/{p}/services",
        f"/v1/projects/{p}/jobs",
        f"/v1/projects/{p}/services/{targets['build']}/build",
        f"/v1/projects/{p}/jobs/{targets['job']}/build",
        f"/v1/projects/{p}/jobs/{targets['job']}/runs",
        f"/v1/projects/{p}/webhook/deliveries",
        f"/v1/projects/{p}/notifications",
        f"/v1/projects/{p}/notifications/deliveries",
    ]


@pytest.mark.parametrize("cursor", CURSORS)
def test_forged_cursor_is_400(client: TestClient, targets: dict[str, str], cursor: str) -> None:
    for path in list_paths(targets):
        response = client.get(path, params={"cursor": cursor})
        if response.status_code == 200:
            continue  # a cursor the endpoint ignores (or a valid empty page): not an error
        assert response.status_code == 400, (path, cursor, response.text)
        error = assert_error(response, 400)
        assert "cursor" in error["message"], (path, error)


def test_valid_cursor_still_pages(client: TestClient, targets: dict[str, str]) -> None:
    p = targets["project"]
    first = client.get(f"/v1/projects/{p}/services", params={"per_page": 1}).json()
    assert first["pagination"]["hasNextPage"] is True
    second = client.get(
        f"/v1/projects/{p}/services",
        params={"per_page": 1, "cursor": first["pagination"]["cursor"]},
    )
    assert second.status_code == 200, second.text
    assert second.json()["data"]["services"] != first["data"]["services"]


def test_log_stream_resume_points_past_64_bits_are_400(
    client: TestClient, targets: dict[str, str]
) -> None:
    """``after`` / ``Last-Event-ID`` reach SQL as a line id: past 64 bits they were an
    OverflowError inside the stream (a 200 that broke off); now the caller's 400."""
    from tests.api.test_log_stream import seed

    path, build_id = seed(client, targets)
    stream = f"{path}/build-logs/stream"
    huge = str(10**30)
    assert_error(client.get(stream, params={"buildId": build_id, "after": huge}), 400)
    r = client.get(stream, params={"buildId": build_id}, headers={"Last-Event-ID": huge})
    assert_error(r, 400, "Last-Event-ID")
    ok = client.get(stream, params={"buildId": build_id}, headers={"Last-Event-ID": "3"})
    assert ok.status_code == 200 and "event: end" in ok.text
