"""Build logs over HTTP: range filters and the server-sent event stream (ids, resume, end)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from shipyard.store import logs as log_store
from tests.api.test_start_build_rules import assert_error


def seed(client: TestClient, targets: dict[str, str]) -> tuple[str, str]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        (t0 + timedelta(seconds=i), f"line {i}{' error' if i % 3 == 0 else ''}") for i in range(10)
    ]
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        log_store.append(session, build_id, 1, 0, lines)
        session.commit()
    client.delete(f"{path}/build/{build_id}")  # concluded: streams end
    return path, build_id


def test_range_filters(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)

    def get(**params: object) -> list[str]:
        response = client.get(f"{path}/build-logs", params={"buildId": build_id, **params})
        return [x["log"] for x in response.json()["data"]]

    assert get() == [f"line {i}{' error' if i % 3 == 0 else ''}" for i in range(10)]
    assert get(lineLimit=2) == ["line 0 error", "line 1"]
    assert get(lineLimit=2, direction="backward") == ["line 9 error", "line 8"]
    assert get(textIncludes="error") == [
        "line 0 error",
        "line 3 error",
        "line 6 error",
        "line 9 error",
    ]
    assert get(regexIncludes=r"line [12]$") == ["line 1", "line 2"]
    assert get(startTime="2026-01-01T00:00:08Z") == ["line 8", "line 9 error"]
    assert get(endTime="2026-01-01T00:00:01.000Z") == ["line 0 error", "line 1"]
    assert_error(
        client.get(f"{path}/build-logs", params={"buildId": build_id, "regexIncludes": "("}),
        400,
        "regexIncludes",
    )
    assert_error(client.get(f"{path}/build-logs"), 400, "buildId")
    assert_error(
        client.get(f"{path}/build-logs", params={"buildId": build_id, "direction": "sideways"}),
        400,
        "direction",
    )


def events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        out.append(fields)
    return out


def test_stream_ids_resume_and_end(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)
    everything = events(client.get(f"{path}/build-logs/stream", params={"buildId": build_id}).text)
    assert [e["id"] for e in everything[:-1]] == [str(i) for i in range(10)]
    assert json.loads(everything[0]["data"])["log"] == "line 0 error"
    assert everything[-1]["event"] == "end"
    assert json.loads(everything[-1]["data"])["status"] == "ABORTED"
    resumed = events(
        client.get(
            f"{path}/build-logs/stream",
            params={"buildId": build_id},
            headers={"Last-Event-ID": "7"},
        ).text
    )
    assert [e.get("id") for e in resumed] == ["8", "9", None]
    after = events(
        client.get(f"{path}/build-logs/stream", params={"buildId": build_id, "after": 8}).text
    )
    assert [e.get("id") for e in after] == ["9", None]
